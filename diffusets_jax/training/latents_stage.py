"""Pre-encoding: every split through the trained VAE once, with each record's condition
(prompt embedding, sex, age, heart rate), into the workdir's latent files the diffusion stage
trains on."""
import json
import logging
from pathlib import Path

import numpy as np
import jax
from tqdm import tqdm

from diffusets_jax import batching
from diffusets_jax.conditioning import patient, prompts, text_encoders
from diffusets_jax.conditioning.record import conditioning_record
from diffusets_jax.datasets import augmentation, input_pipeline, preprocessing
from diffusets_jax.models import factory
from diffusets_jax.store import loading
from diffusets_jax.store import workdir as workdirs
from diffusets_jax.training import distributed

log = logging.getLogger(__name__)
SPLITS = ('train', 'val', 'test')


def make_latent_encoder(config, vae_params):
  """pmapped VAE encode of one global chunk: each process passes its rows (local devices,
  rows per device, 1024, 12) and gets back the latents of the whole chunk."""
  vae = factory.make_vae(config)

  def encode(ecg, noise):
    latent = vae.apply({'params': vae_params}, ecg, noise, method=vae.encode)[0]
    return jax.lax.all_gather(latent, batching.AXIS, tiled=True)

  p_encode = jax.pmap(encode, axis_name=batching.AXIS)
  return lambda ecg, noise: np.asarray(p_encode(ecg, noise).addressable_data(0))[0]


def encode_latents(config, workdir, vae_params=None) -> dict[str, Path]:
  """Pre-encodes every split once with the trained VAE (a stochastic posterior sample, x
  vae.latent_scale, as the reference) and embeds each distinct prompt once. With
  diffusion.stretch_copies > 0 the train split also gets that many time-stretched copies of each
  record, and with diffusion.shift_copies > 0 that many phase-shifted copies of each record
  (stretched copies included) after them (datasets/augmentation.py); with
  diffusion.single_report_copies, records of several reports once more with one of them alone,
  after all of those. Writes latents/<split>.npz holding
  latent (n, 128, 4), patient (n, 3: sex code, age, heart rate), the distinct prompts with their
  embeddings and each record's prompt index, the record ids, and the conditioning record (JSON).
  Training reads these; it never embeds.

  Streams: `latent_encode_batch_size` ECGs at a time, split over every device of every process
  (each process reads only its rows); process 0 reads the metadata, embeds and writes.
  """
  if vae_params is None:
    vae_params = loading.workdir_vae_params(config, workdir)
  encode = make_latent_encoder(config, vae_params)
  main = distributed.is_main_process()
  encoder = text_encoders.make_text_encoder(config.text) if main else None
  latent_shape = factory.latent_shape(config)
  size = config.diffusion.latent_encode_batch_size
  rows = batching.process_rows(size)
  key = jax.random.PRNGKey(config.seed + 2)
  written, record = {}, None
  for split in SPLITS:  # train first: it defines the fill value for unknown ages
    source = input_pipeline.open_split(config.data, split)
    if split == 'train':
      d = config.diffusion
      source = augmentation.with_copies(source, d.stretch_copies, d.stretch_max_factor,
                                        d.shift_copies, config.seed)
    n = len(source)
    latents = []
    for start in tqdm(range(0, n, size), desc=f'encode {split}', unit='batch', leave=False,
                      disable=not main):
      chunk = np.arange(start, min(start + size, n))
      mine = np.arange(start, start + size)[rows]  # past the end: padding (one shape, one compile)
      ecg = np.zeros((len(mine), preprocessing.NUM_SAMPLES, 12), np.float32)
      real = mine < n
      if real.any():
        ecg[real] = input_pipeline.read_rows(source, mine[real], 'ecg')
      noise = np.asarray(jax.random.normal(jax.random.fold_in(key, start),
                                           (size,) + latent_shape))[rows]
      latents.append(encode(*batching.shard((ecg, noise)))[:len(chunk)])
    if main:
      data = input_pipeline.read_split_metadata(source)
      if record is None:  # from the records alone, before any copies
        record = conditioning_record(config, patient.missing_age_fill(data['age']))
      latent = np.concatenate(latents)
      if split == 'train' and config.diffusion.single_report_copies:
        latent, data = with_single_report_copies(latent, data, config.seed + 5)
      written[split] = write_latents(config, workdir, split, record, encoder, latent, data)
  distributed.barrier('latents written')
  return written


def with_single_report_copies(latent, data: dict, seed: int):
  """The latents and metadata (read_split_metadata's) with one more row for each record of two
  or more reports: the same latent and patient, prompted by one of its reports alone, drawn with
  `seed` (diffusion.single_report_copies). A typed prompt is often a single statement, as in
  'Sinus tachycardia', while most training reports list several."""
  several = [i for i, reports in enumerate(data['reports']) if len(reports) >= 2]
  rng = np.random.default_rng(seed)
  alone = [[data['reports'][i][rng.integers(len(data['reports'][i]))]] for i in several]
  copied = {key: (np.concatenate([value, value[several]]) if isinstance(value, np.ndarray)
                  else list(value) + [value[i] for i in several])
            for key, value in data.items() if key != 'reports'}
  copied['reports'] = list(data['reports']) + alone
  return np.concatenate([latent, latent[several]]), copied


def write_latents(config, workdir, split, record, encoder, latent, data) -> Path:
  distinct, prompt_index = prompts.prompt_table(config.text.template, data['reports'])
  embeddings = encoder.encode(distinct, progress=True)
  unknown_age = int(np.sum(~np.isfinite(data['age'])))
  unknown_sex = sum(s not in patient.SEX_CODES for s in data['sex'])
  if unknown_age or unknown_sex:
    log.warning('%s: %d unknown age(s) filled with %.1f years, %d unknown sex(es) coded %.1f',
                split, unknown_age, record['missing_age'], unknown_sex, record['missing_sex'])
  patient_values = np.stack([patient.sex_codes(data['sex']),
                             patient.fill_ages(data['age'], record['missing_age']),
                             np.asarray(data['heart_rate'], np.float32)], axis=1)
  if not np.all(np.isfinite(patient_values)):
    raise ValueError(f'{split}: heart rates must be finite (and ages after filling)')
  return workdirs.write_latents(
      workdir, split, latent=latent, patient=patient_values, prompts=np.array(distinct),
      text_embedding=embeddings, prompt_index=prompt_index,
      record_id=np.array(data['record_id']), conditioning=np.array(json.dumps(record)))
