"""The evaluation protocol: generate ECGs for real test conditions and score them against the
real ECGs at the signal, feature and diagnostic levels, each beside the same metric on real data.

`score` is the metric computation alone (timed by benchmarks/evaluation.py); `evaluate` runs the
whole protocol for a workdir and writes metrics.json, the generated ECGs and the report.
"""
import json
import time
from pathlib import Path

import ml_collections
import numpy as np

from diffusets_jax.conditioning import text_encoders
from diffusets_jax.config_schema import SWEEP_REPORTS
from diffusets_jax.datasets import heart_rate as hr_detector
from diffusets_jax.datasets import input_pipeline
from diffusets_jax.datasets.preprocessing import SAMPLE_RATE_HZ
from diffusets_jax.evaluation import metrics, report, two_sample
from diffusets_jax.evaluation.clip_features import ClipFeatures
from diffusets_jax.generate import Generator
from diffusets_jax.store import workdir as workdirs
from diffusets_jax.store.files import staged_folder


def halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Two disjoint random halves (A, B) of range(n), of equal size n // 2."""
  order = np.random.default_rng([seed, n]).permutation(n)
  return np.sort(order[:n // 2]), np.sort(order[n // 2:2 * (n // 2)])


def pair(generated, real) -> dict:
  return dict(generated=float(generated), real=float(real))


def heart_rate_error(measured, requested) -> tuple[float, int]:
  """(MAE in bpm over the ECGs where a rate was measured, number where none was)."""
  measured, requested = np.asarray(measured), np.asarray(requested)
  ok = np.isfinite(measured)
  mae = float(np.mean(np.abs(measured[ok] - requested[ok]))) if ok.any() else float('nan')
  return mae, int(np.sum(~ok))


def score(features: ClipFeatures, real_ecg, generated_ecg, text_embedding, requested_hr,
          k: int = 3, seed: int = 0) -> tuple[dict, dict]:
  """All metrics of generated ECGs (n, 1024, 12) against the real ECGs of the same conditions.

  text_embedding (n, d_text): the CLIP model's embedding of each record's prompt; requested_hr
  (n,) bpm: the heart rate each ECG was generated for (the real record's). Each metric comes as
  {'generated': ..., 'real': ...}, where 'real' is the same metric with real data in place of
  the generated ECGs; set-to-set metrics compare two random halves A and B of the real set.
  Returns (metrics, per-record details: features, measured heart rates, MAEs).
  """
  n = len(real_ecg)
  if generated_ecg.shape != real_ecg.shape:
    raise ValueError(f'generated ECGs {generated_ecg.shape} and real ECGs {real_ecg.shape} differ')
  if n < 2 * (k + 1):
    raise ValueError(f'need at least {2 * (k + 1)} records (two halves of more than k={k} '
                     f'points each), got {n}')
  a, b = halves(n, seed)
  real_features = features.ecg_features(real_ecg)
  generated_features = features.ecg_features(generated_ecg)
  text_features = features.text_features(text_embedding)
  shuffled_text = text_features[np.random.default_rng([seed, 1]).permutation(n)]

  mae = metrics.signal_mae(generated_ecg, real_ecg)
  measured_generated = hr_detector.heart_rate(generated_ecg)
  measured_real = hr_detector.heart_rate(real_ecg)
  hr_generated, unmeasured_generated = heart_rate_error(measured_generated, requested_hr)
  hr_real, unmeasured_real = heart_rate_error(measured_real, requested_hr)
  # Dropped or undetected beats, which pull the measured (mean-RR) rate down.
  pauses_generated = hr_detector.pause_share(hr_detector.longest_rr_ratio(generated_ecg))
  pauses_real = hr_detector.pause_share(hr_detector.longest_rr_ratio(real_ecg))
  # Rate and pauses again from an independent detector, so that neither rests on one algorithm.
  xqrs_rate_generated, xqrs_ratio_generated = hr_detector.second_detector(generated_ecg)
  xqrs_rate_real, xqrs_ratio_real = hr_detector.second_detector(real_ecg)

  fid = metrics.fid(generated_features, real_features)
  fid_real_halves = metrics.fid(real_features[a], real_features[b])
  clip_generated = metrics.clip_score(generated_features, text_features)
  clip_real = metrics.clip_score(real_features, text_features)
  precision = metrics.precision_recall(real_features[b], generated_features[a], k)
  precision_real = metrics.precision_recall(real_features[b], real_features[a], k)

  residual_generated = metrics.lead_residuals(generated_ecg)
  residual_real = metrics.lead_residuals(real_ecg)
  lead_consistency = {
      relation: {unit: pair(np.nanmean(residual_generated[relation][unit]),
                            np.nanmean(residual_real[relation][unit]))
                 for unit in ('rms_mv', 'relative')}
      for relation in metrics.LEAD_RELATIONS}

  result = dict(
      # A flat line scores the mean |real| mV: a smooth, low-amplitude generator can beat two
      # real ECGs on MAE, so this bound is reported with it.
      signal=dict(mae_mv=pair(mae.mean(), metrics.signal_mae(real_ecg[a], real_ecg[b]).mean()),
                  flat_line_mae_mv=float(np.mean(np.abs(real_ecg)))),
      feature=dict(heart_rate_mae_bpm=pair(hr_generated, hr_real),
                   heart_rate_unmeasured=pair(unmeasured_generated, unmeasured_real),
                   rhythm_pauses=pair(pauses_generated, pauses_real),
                   heart_rate_mae_bpm_xqrs=pair(
                       heart_rate_error(xqrs_rate_generated, requested_hr)[0],
                       heart_rate_error(xqrs_rate_real, requested_hr)[0]),
                   rhythm_pauses_xqrs=pair(hr_detector.pause_share(xqrs_ratio_generated),
                                           hr_detector.pause_share(xqrs_ratio_real))),
      diagnostic=dict(
          fid=pair(fid, fid_real_halves),
          fid_halves=pair(metrics.fid(generated_features[a], real_features[b]), fid_real_halves),
          rfid=pair(fid / fid_real_halves, 1.0),
          clip_score=pair(clip_generated, clip_real),
          clip_score_shuffled=pair(metrics.clip_score(generated_features, shuffled_text),
                                   metrics.clip_score(real_features, shuffled_text)),
          rclip=pair(clip_generated / clip_real, 1.0),
          precision=pair(precision[0], precision_real[0]),
          recall=pair(precision[1], precision_real[1])),
      lead_consistency=lead_consistency)
  details = dict(real_features=real_features, generated_features=generated_features,
                 measured_hr_generated=measured_generated, measured_hr_real=measured_real,
                 mae_mv=mae, half_a=a, half_b=b)
  return result, details


def json_ready(value):
  """NaN (a metric with nothing to average) -> None, so metrics.json is standard JSON."""
  if isinstance(value, dict):
    return {k: json_ready(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_ready(v) for v in value]
  if isinstance(value, float) and not np.isfinite(value):
    return None
  return value


def select_records(split_size: int, num: int, seed: int, split: str) -> np.ndarray:
  """Indices of `num` records of the split (all of them for num=0), a seeded choice, sorted."""
  if num < 0:
    raise ValueError(f'--num must be positive (or 0 for the whole split), got {num}')
  if num > split_size:
    raise ValueError(f'--num {num} is larger than the {split} split, which has {split_size} '
                     f'records; use --num {split_size} (or 0) or another --split')
  if num in (0, split_size):
    return np.arange(split_size)
  return np.sort(np.random.default_rng([seed, split_size]).choice(split_size, num, replace=False))


def chosen_records(generator: Generator, split: str, num: int, seed: int,
                   dataset: str | None = None):
  """(real ECGs, condition vectors, requested heart rates) of the records evaluate.py would
  choose (`select_records`), for the diagnostic scripts that generate from the same
  conditions. dataset: one dataset of a model trained on several (None: all of them)."""
  data = input_pipeline.read_all(input_pipeline.open_split(generator.config.data, split,
                                                           dataset))
  index = select_records(len(data['ecg']), num, seed, split)
  requested = np.asarray(data['heart_rate'], np.float64)[index]
  cond = generator.conditions([data['reports'][i] for i in index],
                              np.asarray(data['age'], np.float64)[index],
                              [data['sex'][i] for i in index], requested)
  return data['ecg'][index], cond, requested


def check_text_match(generator: Generator, features: ClipFeatures) -> None:
  """Raises if the CLIP model reads embeddings of another text encoder than the generator's."""
  text_encoders.check_same_encoder(
      features.text, generator.conditioning['text'], 'the CLIP model',
      'The generator\'s prompts cannot be scored in another embedding space: train the clip '
      'stage with the generator\'s text settings.')


CONSISTENT_SWEEP = (f'Sinus bradycardia < {hr_detector.BRADYCARDIA_BELOW_BPM} <= Sinus rhythm <= '
                    f'{hr_detector.TACHYCARDIA_ABOVE_BPM} < Sinus tachycardia')


def sweep_report(rate: float, evaluation) -> str:
  """The report asked at `rate`: evaluation.sweep_report for the paper's single-prompt sweep;
  for the consistent one, the rhythm that rate is: 'Sinus bradycardia' below 60 bpm, 'Sinus
  rhythm' from 60 to 100, 'Sinus tachycardia' above 100."""
  if evaluation.sweep_reports == 'single':
    return evaluation.sweep_report
  if evaluation.sweep_reports != 'consistent':
    raise ValueError(f'evaluation.sweep_reports must be one of {SWEEP_REPORTS}, got '
                     f'{evaluation.sweep_reports!r}')
  if rate < hr_detector.BRADYCARDIA_BELOW_BPM:
    return 'Sinus bradycardia'
  return 'Sinus rhythm' if rate <= hr_detector.TACHYCARDIA_ABOVE_BPM else 'Sinus tachycardia'


def heart_rate_sweep(generator: Generator, evaluation, settings, seed) -> dict:
  """The heart-rate sweep: one age and sex, requested heart rate over `sweep_rates`, each with
  the report `sweep_report` gives it; per requested rate, the mean and sd of the measured rate
  and the share of ECGs with a pause."""
  rates = np.repeat(np.asarray(evaluation.sweep_rates, np.float64), evaluation.sweep_samples)
  reports = [sweep_report(rate, evaluation) for rate in rates]
  cond = generator.conditions([[report] for report in reports],
                              [evaluation.sweep_age] * len(rates),
                              [evaluation.sweep_sex] * len(rates), rates)
  ecg = generator.generate_from_conditions(cond, seed=seed + 1,
                                           batch_size=evaluation.batch_size,
                                           progress='heart-rate sweep', **settings.as_kwargs())
  measured = hr_detector.heart_rate(ecg)
  longest_rr = hr_detector.longest_rr_ratio(ecg)
  rows = []
  for rate in evaluation.sweep_rates:
    values = measured[rates == rate]
    ok = values[np.isfinite(values)]
    rows.append(dict(requested=float(rate), report=sweep_report(rate, evaluation),
                     mean=float(ok.mean()) if len(ok) else float('nan'),
                     sd=float(ok.std(ddof=1)) if len(ok) > 1 else float('nan'),
                     measured=int(len(ok)), samples=int(len(values)),
                     pauses=hr_detector.pause_share(longest_rr[rates == rate])))
  mae, unmeasured = heart_rate_error(measured, rates)
  xqrs_rate, xqrs_ratio = hr_detector.second_detector(ecg)
  report = (evaluation.sweep_report if evaluation.sweep_reports == 'single'
            else CONSISTENT_SWEEP)
  return dict(reports=evaluation.sweep_reports, report=report, age=float(evaluation.sweep_age),
              sex=evaluation.sweep_sex, rows=rows, mae_bpm=mae, unmeasured=unmeasured,
              pauses=hr_detector.pause_share(longest_rr),
              mae_bpm_xqrs=heart_rate_error(xqrs_rate, rates)[0],
              pauses_xqrs=hr_detector.pause_share(xqrs_ratio), ecg=ecg, requested=rates,
              measured_hr=measured)


def vae_reconstruction(codec, real_ecg, batch_size: int = 64) -> tuple[dict, np.ndarray]:
  """Stage-1 check on real ECGs (n, 1024, 12) mV with a VAE (a generate.VAECodec, or a
  Generator's): encode (posterior mean) and decode. Returns the MAE, the MAE of a flat line at each record's lead means (what
  reconstructing nothing scores), how often the reconstruction keeps the heart rate (within
  3 bpm), where in frequency the error lies; and the reconstructions."""
  recon = codec.decode(codec.encode(real_ecg, batch_size), batch_size)
  hr_real, hr_recon = hr_detector.heart_rate(real_ecg), hr_detector.heart_rate(recon)
  both = np.isfinite(hr_real) & np.isfinite(hr_recon)
  centred = real_ecg - real_ecg.mean(axis=1, keepdims=True)
  flat = np.abs(centred).mean()
  mae = float(np.abs(recon - real_ecg).mean())
  return dict(mae_mv=mae, flat_line_mae_mv=float(flat), mae_over_flat_line=mae / float(flat),
              heart_rate_within_3bpm=float(np.mean(np.abs(hr_recon - hr_real)[both] <= 3.0))
              if both.any() else float('nan'),
              heart_rate_compared=int(both.sum()), records=int(len(real_ecg)),
              error_by_band=error_by_band(recon - real_ecg, centred)), recon


def error_by_band(error, centred_real) -> list[dict]:
  """Per frequency band: the RMS of the reconstruction error and of the real ECGs (lead means
  removed, as the flat line has them), and the band's share of the squared error."""
  nyquist = SAMPLE_RATE_HZ / 2
  error_ms = metrics.band_mean_squares(error, SAMPLE_RATE_HZ)
  real_ms = metrics.band_mean_squares(centred_real, SAMPLE_RATE_HZ)
  return [dict(low_hz=low, high_hz=min(high, nyquist), error_rms_mv=float(np.sqrt(err)),
               real_rms_mv=float(np.sqrt(real)), share_of_squared_error=err / sum(error_ms))
          for (low, high), err, real in zip(metrics.FREQUENCY_BANDS_HZ, error_ms, real_ms)]


def two_sample_tests(real_ecg, generated, reconstructed, evaluation, seed: int) -> dict:
  """C2ST accuracies (two_sample.py), each {'generated': x, 'real': floor}: the ECGs generated
  for real half A's conditions against real half B, and the VAE's reconstructions against
  their own originals (every record, each held out with its original), beside real A against
  real B as the floor; on 12 leads and on lead II. generated=None tests the reconstructions
  alone."""
  a, b = halves(len(real_ecg), seed)
  settings = dict(steps=evaluation.two_sample_steps, folds=evaluation.two_sample_folds,
                  max_per_class=evaluation.two_sample_max_per_class, seed=seed)
  out = {}
  for suffix, leads in (('12_leads', None), ('lead_ii', (two_sample.LEAD_II,))):
    reference = two_sample.preprocess(real_ecg[b], leads)
    floor = two_sample.accuracy(two_sample.preprocess(real_ecg[a], leads), reference, **settings)
    if generated is not None:
      test = two_sample.accuracy(two_sample.preprocess(generated[a], leads), reference,
                                 **settings)
      out[f'generated_{suffix}'] = pair(test['accuracy'], floor['accuracy'])
    test = two_sample.accuracy(two_sample.preprocess(reconstructed, leads),
                               two_sample.preprocess(real_ecg, leads), paired=True, **settings)
    out[f'reconstructed_{suffix}'] = pair(test['accuracy'], floor['accuracy'])
  out.update(per_class=floor['per_class'], folds=floor['folds'])
  return out


def evaluate(workdir, split: str = 'test', num: int = 0, clip_workdir=None,
             sampler: str | None = None, steps: int | None = None, seed: int = 0, out=None,
             sweep: bool = True, guidance_scale: float | None = None,
             dataset: str | None = None, precision: str | None = None,
             guidance_min_step: int | None = None, ddim_eta: float | None = None,
             two_sample_tests_run: bool = True, sweep_reports: str | None = None,
             sweep_rates=None, data_from=None, autoguidance_scale: float | None = None,
             guidance_dropout: float | None = None,
             autoguidance_min_step: int | None = None) -> Path:
  """Runs the protocol for a trained workdir (None: the shipped pretrained model, which then
  needs clip_workdir and out); returns the output folder (written whole or not at all: a failed
  run leaves no partial folder). `dataset`: one dataset of a model trained on several (default:
  the split of all of them). guidance_min_step: classifier-free guidance only on steps t >= it
  (None: the model's sampling.guidance_min_step). ddim_eta: the ddim sampler's noise per step
  (None: the model's sampling.ddim_eta). autoguidance_scale, guidance_dropout,
  autoguidance_min_step: autoguidance against the U-Net with that share of its activations
  dropped, on steps t >= the last (None: the model's sampling.*). sweep_reports, sweep_rates:
  the sweep's (None: the model's evaluation.sweep_reports and sweep_rates). data_from: a workdir
  whose config's data settings choose the real records (None: the model's own), so that models
  trained on different data are scored on the same records."""
  if workdir is None and (clip_workdir is None or out is None):
    raise ValueError('evaluating the pretrained model needs --clip_workdir (a workdir with a '
                     'trained clip stage) and --out')
  workdir = None if workdir is None else Path(workdir)
  clip_workdir = Path(clip_workdir or workdir)
  out = Path(out or workdir / 'evaluation' / (f'{split}_{dataset}' if dataset else split))
  timings = {}
  start = time.time()
  # Sampling spreads each batch over every local device (Generator).
  generator = Generator.open(workdir or 'pretrained', precision=precision)
  features = ClipFeatures.from_workdir(clip_workdir)
  check_text_match(generator, features)
  config = generator.config
  evaluation = ml_collections.ConfigDict(config.evaluation.to_dict())
  if sweep_reports is not None:
    if sweep_reports not in SWEEP_REPORTS:
      raise ValueError(f'sweep_reports must be one of {SWEEP_REPORTS}, got {sweep_reports!r}')
    evaluation.sweep_reports = sweep_reports
  if sweep_rates is not None:
    evaluation.sweep_rates = tuple(float(rate) for rate in sweep_rates)
  settings = generator.settings(sampler, steps, ddim_eta, guidance_scale, guidance_min_step,
                                autoguidance_scale, guidance_dropout, autoguidance_min_step)
  data_config = config.data if data_from is None else workdirs.load_config(data_from).data
  data = input_pipeline.read_all(input_pipeline.open_split(data_config, split, dataset))
  index = select_records(len(data['ecg']), num, seed, split)
  real_ecg = data['ecg'][index]
  reports = [data['reports'][i] for i in index]
  ages = np.asarray(data['age'], np.float64)[index]
  sexes = [data['sex'][i] for i in index]
  requested_hr = np.asarray(data['heart_rate'], np.float64)[index]
  record_ids = [data['record_id'][i] for i in index]
  timings['load_s'] = time.time() - start

  start = time.time()
  cond = generator.conditions(reports, ages, sexes, requested_hr)
  generated = generator.generate_from_conditions(cond, seed=seed,
                                                 batch_size=evaluation.batch_size,
                                                 progress=f'generate {split}',
                                                 **settings.as_kwargs())
  timings['generate_s'] = time.time() - start
  timings['generate_per_ecg_s'] = timings['generate_s'] / len(index)

  start = time.time()
  # The CLIP model embeds prompts with its own template (the encoder is the generator's).
  text_embedding = text_encoders.embed_reports(generator.text_encoder,
                                               features.text['template'], reports)
  result, details = score(features, real_ecg, generated, text_embedding, requested_hr,
                          evaluation.neighbours, seed)
  timings['score_s'] = time.time() - start

  sweep_result = None
  if sweep:
    start = time.time()
    sweep_result = heart_rate_sweep(generator, evaluation, settings, seed)
    timings['sweep_s'] = time.time() - start

  start = time.time()
  vae_result, recon = vae_reconstruction(generator.codec, real_ecg)
  timings['vae_s'] = time.time() - start

  if two_sample_tests_run and evaluation.two_sample_steps > 0:
    start = time.time()
    result['two_sample'] = two_sample_tests(real_ecg, generated, recon, evaluation, seed)
    timings['two_sample_s'] = time.time() - start

  summary = dict(
      workdir=str(workdir or 'pretrained'), clip_workdir=str(clip_workdir),
      data_from=None if data_from is None else str(data_from), split=split,
      dataset=dataset or data_config.name, num=len(index), seed=seed, sampler=settings.sampler,
      steps=settings.unet_steps(config.diffusion.num_timesteps),
      # One U-Net evaluation per step (a guided step's conditional and unconditional halves run
      # as one batched call; with autoguidance on top, 1.5 on its steps); its wall time per ECG
      # is seconds.generate_per_ecg_s.
      unet_evaluations_per_ecg=settings.unet_evaluations(config.diffusion.num_timesteps),
      **settings.guidance(),
      ddim_eta=settings.ddim_eta if settings.sampler == 'ddim' else None,
      precision=precision or config.precision, devices=len(generator.devices),
      text=text_encoders.describe(generator.conditioning['text']), vae=vae_result, **result,
      heart_rate_sweep=None if sweep_result is None else {
          k: v for k, v in sweep_result.items() if k not in ('ecg', 'requested', 'measured_hr')},
      seconds=timings)

  with staged_folder(out, replace=True) as staging:
    (staging / 'metrics.json').write_text(json.dumps(json_ready(summary), indent=1, allow_nan=False))
    np.savez(staging / 'generated.npz', generated=generated.astype(np.float32),
             real=real_ecg.astype(np.float32), record_id=np.array(record_ids),
             requested_hr=requested_hr, measured_hr=details['measured_hr_generated'],
             mae_mv=details['mae_mv'], real_features=details['real_features'],
             generated_features=details['generated_features'],
             reconstructed=recon.astype(np.float32))
    if sweep_result is not None:
      np.savez(staging / 'heart_rate_sweep.npz', ecg=sweep_result['ecg'].astype(np.float32),
               requested_hr=sweep_result['requested'], measured_hr=sweep_result['measured_hr'])
    report.write(staging, summary, real_ecg, generated, details, record_ids, reports,
                 sweep_result, evaluation.grid_records, recon)
  return out


def summary_table(metrics_path) -> str:
  """The main metrics of a metrics.json as an aligned text table (generated | real)."""
  summary = json.loads(Path(metrics_path).read_text())
  lines = [f'{"metric":<44}{"generated":>12}{"real":>12}']
  for section, key, label, _, _ in report.ROWS:
    if section not in summary:
      continue
    value = summary[section][key]
    lines.append(f'{label:<44}{report.fmt(value["generated"]):>12}'
                 f'{report.fmt(value["real"]):>12}')
  lines.append(f'{"signal MAE of a flat line (mV)":<44}'
               f'{report.fmt(summary["signal"]["flat_line_mae_mv"]):>12}')
  sweep = summary.get('heart_rate_sweep')
  if sweep:
    lines.append(f'{"heart-rate sweep MAE (bpm)":<44}{report.fmt(sweep["mae_bpm"]):>12}')
  return '\n'.join(lines)
