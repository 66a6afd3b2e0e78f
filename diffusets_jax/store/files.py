"""Writing files so that a reader never sees half of one: atomic text files and staged folders."""
import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path


def write_atomic(path, text: str) -> None:
  """Writes via a temporary file and a rename, so readers never see half a file."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.')
  with os.fdopen(fd, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


@contextlib.contextmanager
def staged_folder(out, replace: bool = False):
  """Yields a temporary sibling of `out` to write into; on success it becomes `out` (replacing
  an existing one if `replace`, else refusing it), on any failure it is removed: a folder is
  written whole or not at all."""
  out = Path(out)
  if out.exists() and not replace:
    raise FileExistsError(f'{out} exists; choose a new output folder')
  out.parent.mkdir(parents=True, exist_ok=True)
  staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f'.{out.name}.tmp-'))
  try:
    yield staging
    if out.exists():
      shutil.rmtree(out)
    os.replace(staging, out)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise


def sha256(path) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()
