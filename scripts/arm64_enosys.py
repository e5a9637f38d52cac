"""Run a command in which the x86_64 syscalls faccessat2 and statx fail with ENOSYS (a seccomp filter).

proot 5.1 (Debian 12) predates both and passes their paths to the host kernel untranslated, so inside the
arm64 root `os.access("/etc/fer-edge/config.toml")` looked at the host's /etc. With ENOSYS, glibc (in qemu and
in the guest) falls back to faccessat and fstatat, which proot translates. Usage: arm64_enosys.py CMD [ARG...]
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

FACCESSAT2, STATX = 439, 332  # x86_64 syscall numbers
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
LOAD_SYSCALL_NR, JUMP_IF_EQUAL, RETURN = 0x20, 0x15, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_RET|K
ALLOW, FAIL_WITH = 0x7FFF0000, 0x00050000  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | errno


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: arm64_enosys.py CMD [ARG...]")
    program = (SockFilter * 5)(
        SockFilter(LOAD_SYSCALL_NR, 0, 0, 0),  # seccomp_data.nr
        SockFilter(JUMP_IF_EQUAL, 2, 0, FACCESSAT2),
        SockFilter(JUMP_IF_EQUAL, 1, 0, STATX),
        SockFilter(RETURN, 0, 0, ALLOW),
        SockFilter(RETURN, 0, 0, FAIL_WITH | errno.ENOSYS),
    )
    fprog = SockFprog(len(program), program)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    if (libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            or libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0):
        sys.exit(f"arm64_enosys.py: cannot install the seccomp filter ({os.strerror(ctypes.get_errno())})")
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
