"""Stage `clip`: the ECG-text contrastive model the evaluation scores generated ECGs with, on
the real training split (ECGs and the embeddings of their prompts)."""
from diffusets_jax import batching, train_state
from diffusets_jax.conditioning import text_encoders
from diffusets_jax.datasets import input_pipeline
from diffusets_jax.models import factory
from diffusets_jax.store import workdir as workdirs
from diffusets_jax.training import steps
from diffusets_jax.training.loop import describe_devices, log_main, run_loop


def train_clip(config, workdir, max_steps: int | None = None):
  """Stage `clip`: the ECG-text contrastive model, on the real training split (ECGs and the
  embeddings of their prompts). It records its text encoder, which the evaluation checks."""
  source = input_pipeline.open_split(config.data, 'train')
  n = len(source)
  text = text_encoders.embed_reports(text_encoders.make_text_encoder(config.text),
                                     config.text.template,
                                     input_pipeline.read_split_metadata(source)['reports'],
                                     progress=True)
  workdirs.write_conditioning(workdir, 'clip', dict(text=text_encoders.identity(config.text)))
  batch_size = config.clip.batch_size
  rows = batching.process_rows(batch_size)
  per_epoch = batching.steps_per_epoch(n, batch_size)
  total = per_epoch * config.clip.epochs
  clip, state = train_state.clip_state(config, total)
  lr_fn = train_state.clip_lr(config, total)
  log_main(f'[clip] {factory.count_params(state.params):,} parameters, {n} training pairs, '
           f'{total} steps of batch {batch_size} on {describe_devices()}')

  def batch_fn(step):
    index = batching.batch_indices(step, n, batch_size, config.seed + 3)[rows]
    return dict(ecg=input_pipeline.read_rows(source, index, 'ecg'), text=text[index])

  return run_loop('clip', config, workdir, state, steps.make_clip_step(clip), batch_fn,
                  min(total, max_steps or total), lr_fn)
