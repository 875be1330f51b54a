"""Writing files so that readers never see a half-written one."""
import contextlib
import os
import secrets
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path):
    """Yields a temporary path (a str) beside `path`; `path` is replaced by it only when the block succeeds.

    On failure the temporary file is removed and an existing `path` is left as it was. The temporary file lives in
    the target's directory because a rename is atomic only within one file system, and its name keeps the target's
    suffix because some writers (image encoders) pick the format from the extension.
    """
    target = Path(path)
    temp = target.with_name(f'.{target.stem}.{secrets.token_hex(4)}.tmp{target.suffix}')
    # O_EXCL keeps two concurrent writers from sharing a temporary file; mode 0o666 lets the umask decide the final
    # permissions, as a plain open() would (mkstemp would leave the result readable by its owner only).
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield str(temp)
        # Without this, a crash soon after the rename can leave an empty file under the final name on some file systems.
        fd = os.open(temp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
