/*
 * ProcessPrng, the one function of bcryptprimitives.dll, for the Wine
 * prefix the tests run Windows programs in (scripts/wine-run.sh installs
 * it there; it is not part of the package). Every Windows 10 and later has
 * bcryptprimitives.dll, and Rust's standard library (1.78 and later) takes
 * its random numbers from ProcessPrng there; Debian bookworm's Wine 8 does
 * not have the DLL yet (Wine 9 does), so without it no Rust program starts
 * under that Wine. This implements it with Wine's BCryptGenRandom, the
 * system RNG it wraps on Windows.
 */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG n = len > 0x7fffffff ? 0x7fffffff : (ULONG)len;
        if (BCryptGenRandom(NULL, data, n, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
