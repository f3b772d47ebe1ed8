//! Digests and references as SQLite values: stored in their canonical
//! spelling, parsed back when read, so a corrupt row surfaces as an index
//! error where it is read instead of as a bad digest deep in the engine.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::{Digest, Reference};

impl ToSql for Digest {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.as_str().as_bytes())))
    }
}

impl FromSql for Digest {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        Digest::parse(value.as_str()?).map_err(|e| FromSqlError::Other(e.into()))
    }
}

impl ToSql for Reference {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.to_string()))
    }
}

impl FromSql for Reference {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        Reference::parse(value.as_str()?).map_err(|e| FromSqlError::Other(e.into()))
    }
}
