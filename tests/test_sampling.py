"""Generation from a (briefly) trained workdir: the API, the CLI outputs and bad input."""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import ml_collections
import numpy as np
import pytest
import wfdb

from diffusets_jax.generate import Generator
from diffusets_jax.io import ecg_files, plots
from tests.conftest import cpu_devices_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def generator(trained_workdir):
  return Generator.from_workdir(trained_workdir)


def test_generate_shapes_determinism_and_conditions(generator):
  a = generator.generate(['Sinus rhythm'], age=50, sex='F', heart_rate=70, num=2,
                         sampler='ddim', steps=5, seed=3)
  b = generator.generate(['Sinus rhythm'], age=50, sex='F', heart_rate=70, num=2,
                         sampler='ddim', steps=5, seed=3)
  c = generator.generate(['Atrial fibrillation', 'Left axis deviation'], age=80, sex='M',
                         heart_rate=120, num=2, sampler='ddim', steps=5, seed=3)
  assert a.shape == (2, 1024, 12) and np.isfinite(a).all()
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)  # the condition reaches the output


def test_ddpm_sampler_runs(generator):
  out = generator.generate('Sinus rhythm', age=50, sex='F', heart_rate=70, num=1,
                           sampler='ddpm', seed=0)
  assert out.shape == (1, 1024, 12) and np.isfinite(out).all()


@pytest.mark.parametrize('kwargs, message', [
    (dict(age=-3), 'age must be 0-120 years, got -3'),
    (dict(heart_rate=10), 'heart rate must be 20-300 bpm, got 10'),
    (dict(sex='X'), "sex must be 'M', 'F' or unknown"),
    (dict(reports=['  ']), 'non-empty'),
    (dict(sampler='euler'), "sampler must be one of ddpm, ddim, dpmpp"),
])
def test_bad_input_is_named(generator, kwargs, message):
  args = dict(reports=['Sinus rhythm'], age=50, sex='F', heart_rate=70, num=1)
  args.update(kwargs)
  with pytest.raises(ValueError, match=message):
    generator.generate(**args)


def test_wfdb_round_trip_at_both_rates(tmp_path):
  t = np.arange(1024) / 102.4
  ecg = np.stack([np.sin(2 * np.pi * (k + 1) * t / 10) * 0.5 for k in range(12)], 1)
  ecg_files.write_wfdb(ecg, tmp_path, 'a', 102.4, comments=['test'])
  record = wfdb.rdrecord(str(tmp_path / 'a'))
  assert record.fs == 102.4 and record.sig_name[4:6] == ['aVL', 'aVF'] and record.units[0] == 'mV'
  np.testing.assert_allclose(record.p_signal, ecg, atol=1e-3)
  ecg_files.write_wfdb(ecg, tmp_path, 'b', 500)
  record = wfdb.rdrecord(str(tmp_path / 'b'))
  assert record.p_signal.shape == (5000, 12)
  # 500 Hz sample 5n falls on 102.4 Hz sample 1.024 n: compare at the shared instants.
  np.testing.assert_allclose(record.p_signal[::625], ecg[::128], atol=2e-2)
  with pytest.raises(ValueError, match='sample rate'):
    ecg_files.write_wfdb(ecg, tmp_path, 'c', 250)


def test_plot_has_the_paper_scale(tmp_path):
  from PIL import Image
  path = plots.plot_ecg(np.zeros((1024, 12)), 102.4, tmp_path / 'x.png', 'flat')
  width_px, _ = Image.open(path).size
  # 10 mm calibration margin + 10 s at 25 mm/s = 260 mm at 150 dpi
  assert abs(width_px - 260 / 25.4 * 150) < 3
  with pytest.raises(ValueError, match='shape'):
    plots.plot_ecg(np.zeros((1024, 11)), 102.4, tmp_path / 'y.png')


def test_figures_are_palette_pngs_that_look_the_same(tmp_path):
  from PIL import Image
  fig, ax = plots.plt.subplots(figsize=(6, 3))
  t = np.linspace(0, 10, 1024)
  for lead in range(4):  # antialiased lines in four colours, a legend, text
    ax.plot(t, np.sin(3 * t + lead) + 2 * lead, lw=0.8, label=f'lead {lead}')
  ax.legend()
  fig.savefig(tmp_path / 'matplotlib.png', dpi=110)  # matplotlib's own RGBA PNG
  plots.save_figure(fig, tmp_path / 'palette.png', dpi=110)
  plots.plt.close(fig)
  own, palette = Image.open(tmp_path / 'matplotlib.png'), Image.open(tmp_path / 'palette.png')
  assert (own.mode, palette.mode) == ('RGBA', 'P')
  difference = np.abs(np.asarray(own.convert('RGB'), np.int32)
                      - np.asarray(palette.convert('RGB'), np.int32))
  assert difference.mean() < 0.5 and np.mean(difference.max(axis=-1) > 16) < 1e-3
  assert (tmp_path / 'palette.png').stat().st_size < 0.7 * (tmp_path / 'matplotlib.png').stat().st_size
  ecg_path = plots.plot_ecg(np.zeros((1024, 12)), 102.4, tmp_path / 'ecg.png', 'flat')
  assert Image.open(ecg_path).mode == 'P'


def test_sample_cli_writes_every_format(trained_workdir, tmp_path):
  out = tmp_path / 'samples'
  subprocess.run([sys.executable, 'sample.py', f'--workdir={trained_workdir}',
                  '--text=Sinus bradycardia', '--text=Left axis deviation', '--age=60',
                  '--sex=F', '--hr=55', '--num=2', '--sampler=ddim', '--steps=4',
                  f'--out={out}', '--wfdb_rate=500'], cwd=ROOT, check=True,
                 capture_output=True, text=True)
  record = wfdb.rdrecord(str(out / 'ecg_001'))
  assert record.fs == 500 and record.p_signal.shape == (5000, 12)
  assert any('Most importantly' in c for c in record.comments)
  with np.load(out / 'ecgs.npz') as f:
    assert f['ecg'].shape == (2, 1024, 12)
  assert (out / 'ecg_000.png').stat().st_size > 50_000


def test_sample_cli_rejects_bad_age(trained_workdir, tmp_path):
  run = subprocess.run([sys.executable, 'sample.py', f'--workdir={trained_workdir}',
                        '--text=Sinus rhythm', '--age=-3', '--sex=F', '--hr=55',
                        f'--out={tmp_path}/x'], cwd=ROOT, capture_output=True, text=True)
  assert run.returncode != 0 and 'age must be 0-120 years, got -3' in run.stderr
  assert not (tmp_path / 'x').exists()  # nothing half-written


def test_generator_refuses_another_text_encoder(trained_workdir):
  from diffusets_jax.conditioning.text_encoders import HashingEncoder
  with pytest.raises(ValueError, match=r'made with text encoder minilm \(all-MiniLM-L6-v2, 384-d\)'):
    Generator.from_workdir(trained_workdir, text_encoder=HashingEncoder(384))


def test_generator_refuses_a_changed_prompt_template(generator):
  config = ml_collections.ConfigDict(generator.config.to_dict())
  config.text.template.separator = ''
  with pytest.raises(ValueError, match='the prompt template differs'):
    Generator(dataclasses.replace(generator.model, config=config))


def test_unknown_age_and_sex_are_filled_as_in_training(generator, trained_workdir):
  from diffusets_jax.store import workdir as workdirs
  train_ages = workdirs.load_latents(trained_workdir, 'train')['patient'][:, 1]
  assert generator.conditioning['missing_age'] == float(np.median(train_ages))
  cond = generator.condition(['Sinus rhythm'], None, None, 70, num=2)
  np.testing.assert_allclose(cond[:, -3:], [[0.5, np.median(train_ages), 70]] * 2)
  known = generator.condition(['Sinus rhythm'], 50, 'M', 70, num=1)
  np.testing.assert_array_equal(known[0, -3:], [1.0, 50.0, 70.0])
  np.testing.assert_array_equal(known[0, :-3], cond[0, :-3])


def test_sample_cli_refuses_another_text_encoder(trained_workdir, tmp_path):
  run = subprocess.run([sys.executable, 'sample.py', f'--workdir={trained_workdir}',
                        '--text=Sinus rhythm', '--hr=55', '--text_encoder=hashing',
                        f'--out={tmp_path}/x'], cwd=ROOT, capture_output=True, text=True)
  assert run.returncode != 0 and 'made with text encoder minilm' in run.stderr
  assert not (tmp_path / 'x').exists()


def test_sampling_spreads_over_every_local_device():
  """On 4 virtual CPU devices each batch is split 4 ways, and the ECGs are those of one device
  for the same seed (up to float32 rounding of the smaller per-device matmuls)."""
  run = subprocess.run([sys.executable, 'tests/multi_device_sampling.py'], cwd=ROOT,
                       env=cpu_devices_env(4),
                       capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  result = json.loads(run.stdout.strip().splitlines()[-1])
  assert result['devices'] == 4
  assert result['devices_holding_the_batch'] == 4 and result['rows_per_device'] == [1, 1, 1, 1]
  assert result['batched_shape'] == [6, 1024, 12]
  assert result['amplitude'] > 0.1  # real ECGs, not zeros
  # float32 rounding, which guidance (3 x the difference of two predictions) grows: 6e-5 mV with
  # XLA's optimisations, 1.0e-4 without them (the suite's setting). Rows sampled on the wrong
  # device or with another key would differ by tenths of a mV.
  assert result['batched_difference'] < 3e-4 and result['guided_difference'] < 3e-4, result


def run_experiment(name: str, *args) -> None:
  out = subprocess.run([sys.executable, f'experiments/{name}.py', *map(str, args)], cwd=ROOT,
                       capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-3000:]


def test_denoising_diagnostics_chain_from_step_0_is_the_one_step_estimate(guided_workdir,
                                                                          tmp_path):
  # At t0 = 0 one DDPM step returns the clipped x0 estimate itself, so the chain and the one-step
  # figures must agree.
  generator = Generator.from_workdir(guided_workdir)
  last = generator.schedule.num_timesteps - 1
  run_experiment('denoising_diagnostics', '--workdir', guided_workdir, '--split', 'test',
                 '--num', 2, '--starts', 0, last, '--guidance_scales', 1, 2, '--out', tmp_path)
  result = json.loads((tmp_path / 'denoising_diagnostics.json').read_text())
  assert result['records'] == 2 and (tmp_path / 'denoising_diagnostics.png').stat().st_size
  assert [(run['guidance_scale'], run['start_step']) for run in result['runs']] == [
      (1.0, 0), (1.0, last), (2.0, 0), (2.0, last)]
  abar = np.asarray(generator.schedule.alphas_cumprod)
  for run in result['runs']:
    assert run['noise_std'] == pytest.approx(np.sqrt(1 - abar[run['start_step']]), abs=1e-4)
    assert np.isfinite(run['one_step']['noise_prediction_rms_error'])
    assert run['one_step']['clean_latent_rms_error'] >= 0
    assert set(run['random_error']) == set(run['one_step']) - {
        'noise_prediction_rms_error', 'clean_latent_rms_error'}
    assert 0 <= run['random_error']['pauses'] <= 1
    if run['start_step'] == 0:  # equal up to float32 rounding of beta_0 / (1 - abar_0)
      chain, one_step = run['chain'], run['one_step']
      assert chain['pauses'] == one_step['pauses'] and chain['measured'] == one_step['measured']
      if one_step['heart_rate_mae_bpm'] is None:  # no beat found in either
        assert chain['heart_rate_mae_bpm'] is None
      else:
        assert chain['heart_rate_mae_bpm'] == pytest.approx(one_step['heart_rate_mae_bpm'],
                                                            abs=0.05)


def test_exposure_bias_measures_the_chain_and_noised_real_latents(guided_workdir, tmp_path):
  # Statistics any model must show, whatever its training: the chain starts from unit-variance
  # noise, and a real latent noised to t has the RMS the forward process gives it.
  from diffusets_jax.evaluation.evaluator import chosen_records
  run_experiment('exposure_bias', '--workdir', guided_workdir, '--split', 'test', '--num', 2,
                 '--guidance_scale', 2, '--real_every', 250, '--out', tmp_path)
  result = json.loads((tmp_path / 'exposure_bias.json').read_text())
  generator = Generator.from_workdir(guided_workdir)
  last = generator.schedule.num_timesteps - 1
  assert result['steps'] == list(range(last, -1, -1)) and result['real_steps'] == [0, 250, 500, 750]
  assert len(result['sampled_eps_rms']) == len(result['sampled_z_rms']) == last + 1
  assert result['sampled_z_rms'][0] == pytest.approx(1.0, abs=0.1)  # z_T ~ N(0, I): 1024 values
  real_ecg, _, _ = chosen_records(generator, 'test', 2, 0)
  clean = np.mean(generator.encode(real_ecg).astype(np.float64) ** 2)
  abar = np.asarray(generator.schedule.alphas_cumprod, np.float64)[result['real_steps']]
  np.testing.assert_allclose(result['real_z_rms'], np.sqrt(abar * clean + 1 - abar), rtol=0.1)
  assert np.all(np.isfinite(result['sampled_eps_rms'])) and min(result['real_eps_rms']) > 0
