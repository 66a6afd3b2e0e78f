"""The package's structure: no import cycle, imports only downward through the layers, and a
sampling path that loads no dataset, training or API-client libraries."""
import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = 'diffusets_jax'

# Layers, bottom first: a module may import its own layer's modules and those below, never
# those above (an import inside a function counts as much as one at the top).
LAYERS = (
    ('config_schema', 'config_validation', 'batching', 'models', 'diffusion', 'conditioning',
     'datasets', 'io', 'conversion', 'pretrained'),
    ('train_state', 'store'),
    ('training', 'generate', 'evaluation'),
    ('convert', 'pretrained.__main__'),
)


def module_name(path: Path) -> str:
  parts = path.relative_to(ROOT).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def package_modules() -> dict[str, Path]:
  return {module_name(path): path for path in (ROOT / PACKAGE).rglob('*.py')}


def imports_of(path: Path, modules: dict) -> set[str]:
  """The package modules `path` imports anywhere in it; `from A import B` names A.B where that
  is a module, else A."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      for alias in node.names:
        child = f'{node.module}.{alias.name}'
        found.add(child if child in modules else node.module)
  return {name for name in found if name in modules and name.split('.')[0] == PACKAGE}


def import_graph() -> dict[str, set[str]]:
  modules = package_modules()
  return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def find_cycle(graph: dict) -> list[str] | None:
  """One cycle of the directed graph as a path that ends where it starts, or None."""
  state, stack = {}, []

  def visit(node):
    state[node] = 'open'
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 'open':
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state and (cycle := visit(nxt)):
        return cycle
    stack.pop()
    state[node] = 'done'
    return None

  for node in sorted(graph):
    if node not in state and (cycle := visit(node)):
      return cycle
  return None


def layer_of(module: str) -> int:
  inner = module[len(PACKAGE) + 1:]
  best = None
  for rank, names in enumerate(LAYERS):
    for name in names:
      if inner == name or inner.startswith(name + '.'):
        if best is None or len(name) > len(best[1]):
          best = (rank, name)
  assert best is not None, f'{module} is in no layer of tests/test_structure.py: place it'
  return best[0]


def test_the_cycle_finder_finds_cycles():
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': set()}) is None


def test_imports_inside_functions_are_seen(tmp_path):
  source = tmp_path / 'm.py'
  source.write_text('def f():\n  from diffusets_jax import generate\n  return generate\n')
  assert imports_of(source, package_modules()) == {'diffusets_jax.generate'}


def test_no_import_cycle_in_the_package():
  cycle = find_cycle(import_graph())
  assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


def test_imports_go_down_the_layers_only():
  upward = [f'{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})'
            for module, targets in import_graph().items() for target in targets
            if layer_of(target) > layer_of(module)]
  assert not upward, '\n'.join(upward)


def test_sampling_and_benchmarks_load_no_dataset_training_or_api_libraries():
  # What a machine that only samples or benchmarks must not need (e.g. a GPU host without
  # tensorflow-datasets, wfdb or openai installed).
  code = '''
import json, sys
sys.path[:0] = ['.', 'benchmarks']
sys.argv = ['sample.py']
import diffusets_jax.generate, sample
import throughput, sampling, gpu_check
import pytorch_reference.side_by_side, pytorch_reference.loops
print(json.dumps(sorted(sys.modules)))
'''
  run = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr[-3000:]
  loaded = set(json.loads(run.stdout.strip().splitlines()[-1]))
  # (benchmarks time the pure train steps, training/steps.py, which need none of these)
  forbidden = ('tensorflow_datasets', 'tensorflow', 'wfdb', 'openai', 'array_record',
               'diffusets_jax.training.stages', 'diffusets_jax.training.loop',
               'diffusets_jax.datasets.input_pipeline')
  assert not [name for name in forbidden if name in loaded]


def test_the_diffusion_stage_loads_no_dataset_or_api_libraries():
  # The U-Net trains on a GPU machine from carried latents (benchmarks/gpu_training.py), where
  # neither the data pipeline nor the API client is installed.
  code = '''
import json, sys
sys.path[:0] = ['.', 'benchmarks']
import diffusets_jax.training.diffusion_stage, gpu_training
print(json.dumps(sorted(sys.modules)))
'''
  run = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr[-3000:]
  loaded = set(json.loads(run.stdout.strip().splitlines()[-1]))
  forbidden = ('tensorflow_datasets', 'tensorflow', 'wfdb', 'openai', 'array_record',
               'diffusets_jax.datasets.input_pipeline', 'diffusets_jax.training.stages')
  assert not [name for name in forbidden if name in loaded]
