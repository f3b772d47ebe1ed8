// The error taxonomy, one row per kind: (code, JavaScript class, what it
// means, extra fields as (name, TypeScript type)). The one list: the
// engine's `Error::code` answers with these codes (a test checks every
// variant against it), and the Node binding's build script makes the
// exported classes, their declarations and the class table `install.js`
// defines from it. Data only, so both can `include!` it. An empty class
// means the base class, `MicrosandboxError`.
[
    ("image_not_found", "ImageNotFoundError", "No cached image answers to the reference.", &[("reference", "string")]),
    ("image_in_use", "ImageInUseError", "Sandboxes still use the image; `sandboxes` names them.", &[("sandboxes", "readonly string[]")]),
    ("unsupported", "UnsupportedError", "The configured backend keeps no local image cache.", &[]),
    ("invalid_reference", "InvalidReferenceError", "The reference is malformed.", &[("reference", "string")]),
    ("image_archive", "ImageArchiveError", "The archive is missing, unreadable, malformed or unsafe; `path` names it.", &[("path", "string")]),
    ("digest_mismatch", "DigestMismatchError", "Content did not match its digest or size; `expected` and `actual` say how.", &[("expected", "string"), ("actual", "string")]),
    ("invalid_layer", "InvalidLayerError", "A layer cannot become a filesystem image.", &[]),
    ("invalid_argument", "InvalidArgumentError", "An argument or option makes no sense.", &[]),
    ("cache", "CacheError", "The cache directory cannot be read or written; `path` names it.", &[("path", "string")]),
    ("cache_index", "CacheIndexError", "The cache index failed.", &[]),
    ("registry", "RegistryError", "A registry failed or refused a request; `registry`, `repository`, `digest` and `status` say which.", &[("registry", "string"), ("repository", "string"), ("digest", "string | null"), ("status", "number | null")]),
    ("authentication", "AuthenticationError", "The registry wants credentials we lack or refused ours.", &[("registry", "string"), ("repository", "string")]),
    ("aborted", "AbortError", "The caller's `AbortSignal` aborted the operation.", &[]),
    ("internal", "", "A bug: something the engine guarantees did not hold.", &[]),
]
