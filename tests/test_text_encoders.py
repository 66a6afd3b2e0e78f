"""Text encoders (Flax MiniLM, OpenAI over a local fake server), the embedding cache, the
config's choice of encoder, and the missing-value rule for patient information."""
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from configs import default
from diffusets_jax.conditioning import embedding_cache, minilm, openai_encoder, patient
from diffusets_jax.conditioning import text_encoders
from tests.fake_openai import FakeOpenAI, fake_embedding

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = json.loads((ROOT / 'tests/fixtures/minilm_reference.json').read_text(encoding='utf-8'))
KEY = 'sk-test-not-a-real-key-1234'


@pytest.fixture(scope='module')
def minilm_encoder():
  return minilm.MiniLMEncoder(batch_size=4)


def test_minilm_matches_sentence_transformers(minilm_encoder, caplog):
  """Reference vectors: see the fixture's `setup` and `command` (sentence-transformers 6.2.0).
  They include non-ASCII text and a prompt beyond the 256-token limit."""
  with caplog.at_level(logging.WARNING):
    ours = minilm_encoder.encode(FIXTURE['sentences'])
  reference = np.array(FIXTURE['embeddings'], np.float32)
  cosine = np.sum(ours * reference, 1) / np.linalg.norm(reference, axis=1)
  assert ours.shape == (7, 384) and cosine.min() > 0.9999, cosine
  np.testing.assert_allclose(ours, reference, atol=1e-5)  # tighter: catches e.g. tanh-GELU
  np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)
  assert 'longer than 256 tokens were truncated' in caplog.text
  assert FIXTURE['max_seq_length'] == minilm.MAX_TOKENS


def test_minilm_does_not_depend_on_batch_company(minilm_encoder):
  """Padding rows and tokens are masked: a prompt's embedding is the same alone or batched."""
  sentences = FIXTURE['sentences'][:5]
  together = minilm_encoder.encode(sentences)
  alone = np.concatenate([minilm_encoder.encode([s]) for s in sentences])
  np.testing.assert_allclose(together, alone, atol=2e-6)


def test_minilm_rejects_empty_prompt(minilm_encoder):
  with pytest.raises(ValueError, match='empty prompt'):
    minilm_encoder.encode(['Sinus rhythm', '   '])


@pytest.fixture
def fake_server(monkeypatch):
  monkeypatch.setenv('OPENAI_API_KEY', KEY)
  with FakeOpenAI() as fake:
    yield fake


def test_openai_batches_requests_and_sends_the_key(fake_server):
  encoder = openai_encoder.OpenAIEncoder(base_url=fake_server.base_url, batch_size=2)
  prompts = ['sinus rhythm', 'sinus bradycardia', 'atrial flutter', 'LVH', 'rythme sinusal é']
  got = encoder.encode(prompts)
  assert [len(r['inputs']) for r in fake_server.requests] == [2, 2, 1]
  assert all(r['model'] == 'text-embedding-ada-002' and r['path'] == '/v1/embeddings'
             for r in fake_server.requests)
  assert fake_server.requests[0]['authorization'] == f'Bearer {KEY}'
  expected = [fake_embedding('text-embedding-ada-002', p, 1536) for p in prompts]
  np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize('failures', [['429'], ['500', '500'], ['malformed'], ['wrong_count']])
def test_openai_retries_transient_failures(fake_server, failures, caplog):
  fake_server.failures = list(failures)
  encoder = openai_encoder.OpenAIEncoder(base_url=fake_server.base_url, backoff_seconds=0.001)
  with caplog.at_level(logging.WARNING):
    got = encoder.encode(['sinus rhythm'])
  assert len(fake_server.requests) == len(failures) + 1
  np.testing.assert_allclose(got[0], fake_embedding('text-embedding-ada-002', 'sinus rhythm',
                                                    1536), rtol=1e-6)
  assert caplog.text.count('retry') == len(failures) and KEY not in caplog.text


def test_openai_gives_up_after_max_retries(fake_server):
  fake_server.failures = ['500'] * 5
  encoder = openai_encoder.OpenAIEncoder(base_url=fake_server.base_url, max_retries=2,
                                         backoff_seconds=0.001)
  with pytest.raises(RuntimeError, match=r'failed after 3 attempts: InternalServerError'):
    encoder.encode(['sinus rhythm'])


def test_openai_rejected_key_is_named_and_not_shown(fake_server):
  fake_server.failures = ['401']
  encoder = openai_encoder.OpenAIEncoder(base_url=fake_server.base_url)
  with pytest.raises(RuntimeError, match='rejected the key in OPENAI_API_KEY') as error:
    encoder.encode(['sinus rhythm'])
  assert KEY not in str(error.value) and len(fake_server.requests) == 1


def test_openai_missing_key(monkeypatch):
  monkeypatch.delenv('OPENAI_API_KEY', raising=False)
  encoder = openai_encoder.OpenAIEncoder(base_url='http://127.0.0.1:9/v1')
  with pytest.raises(openai_encoder.MissingAPIKeyError, match='set OPENAI_API_KEY'):
    encoder.encode(['sinus rhythm'])


def test_openai_models_and_widths(fake_server):
  small = openai_encoder.OpenAIEncoder('text-embedding-3-small', 512, base_url=fake_server.base_url)
  assert small.encode(['x']).shape == (1, 512) and fake_server.requests[-1]['dimensions'] == 512
  large = openai_encoder.OpenAIEncoder('text-embedding-3-large', base_url=fake_server.base_url)
  assert large.encode(['x']).shape == (1, 3072) and fake_server.requests[-1]['dimensions'] is None
  with pytest.raises(ValueError, match='1536-d; text.dim=512 is only possible'):
    openai_encoder.OpenAIEncoder('text-embedding-ada-002', 512)
  with pytest.raises(ValueError, match="unknown OpenAI embedding model 'my-model'"):
    openai_encoder.OpenAIEncoder('my-model')


def test_openai_long_prompt_is_truncated_with_a_warning(fake_server, caplog):
  encoder = openai_encoder.OpenAIEncoder(base_url=fake_server.base_url)
  with caplog.at_level(logging.WARNING):
    encoder.encode(['é' * 5000])  # 10,000 UTF-8 bytes
  sent = fake_server.requests[-1]['inputs'][0]
  assert len(sent.encode('utf-8')) <= openai_encoder.MAX_PROMPT_BYTES and sent == 'é' * 4095
  assert 'truncated' in caplog.text


class CountingEncoder(text_encoders.HashingEncoder):
  """Hashing embeddings that remember every prompt they were asked for."""

  def __init__(self):
    super().__init__(32)
    self.name, self.model = 'counting', 'v1'
    self.encoded = []

  def encode(self, prompts):
    self.encoded += list(prompts)
    return super().encode(prompts)


def test_cache_embeds_each_prompt_once(tmp_path):
  base = CountingEncoder()
  cached = embedding_cache.CachedEncoder(base, embedding_cache.EmbeddingCache(tmp_path))
  first = cached.encode(['a b', 'c', 'a b'])
  second = cached.encode(['c', 'a b', 'd'])
  assert base.encoded == ['a b', 'c', 'd']
  np.testing.assert_array_equal(first[0], second[1])
  np.testing.assert_array_equal(second, base.encode(['c', 'a b', 'd']))
  other_model = embedding_cache.EmbeddingCache(tmp_path).path('counting', 'v2', 'c')
  assert not other_model.exists()  # the model is part of the key


@pytest.mark.parametrize('damage', ['truncate', 'flip', 'garbage', 'empty'])
def test_corrupt_cache_entry_is_recomputed(tmp_path, damage, caplog):
  base = CountingEncoder()
  cache = embedding_cache.EmbeddingCache(tmp_path)
  good = embedding_cache.CachedEncoder(base, cache).encode(['sinus rhythm'])
  path = cache.path('counting', 'v1', 'sinus rhythm')
  data = path.read_bytes()
  path.write_bytes({'truncate': data[:-7], 'flip': data[:40] + bytes([data[40] ^ 1]) + data[41:],
                    'garbage': b'\x00' * len(data), 'empty': b''}[damage])
  with caplog.at_level(logging.WARNING):
    again = embedding_cache.CachedEncoder(base, cache).encode(['sinus rhythm'])
  assert base.encoded == ['sinus rhythm', 'sinus rhythm'] and 'corrupt' in caplog.text
  np.testing.assert_array_equal(good, again)
  assert path.read_bytes() == data  # rewritten whole


WRITER = '''
import sys
import numpy as np
from diffusets_jax.conditioning.embedding_cache import EmbeddingCache
cache = EmbeddingCache(sys.argv[1])
for round in range(3):
  for i in range(150):
    cache.put('enc', 'm', f'prompt {i}', np.full(64, i, np.float32))
'''


def test_two_writers_at_once_leave_only_whole_entries(tmp_path):
  writers = [subprocess.Popen([sys.executable, '-c', WRITER, str(tmp_path)], cwd=ROOT)
             for _ in range(2)]
  assert [w.wait(timeout=120) for w in writers] == [0, 0]
  cache = embedding_cache.EmbeddingCache(tmp_path)
  for i in range(150):
    np.testing.assert_array_equal(cache.get('enc', 'm', f'prompt {i}', 64), np.full(64, i))
  assert not list(tmp_path.rglob('.tmp-*'))  # no temporary files left behind


def resolved(**text):
  config = default.get_config()
  config.text.update(text)
  text_encoders.resolve(config.text)
  return config.text


def test_config_resolves_the_encoder_width():
  assert (resolved().encoder, resolved().model, resolved().dim) == ('minilm', 'all-MiniLM-L6-v2',
                                                                    384)
  assert resolved(encoder='openai').dim == 1536
  assert resolved(encoder='openai', model='text-embedding-3-large').dim == 3072
  assert resolved(encoder='hashing', dim=48).dim == 48
  from diffusets_jax.models import factory
  config = default.get_config()
  config.text.encoder = 'openai'
  assert factory.condition_dim(config) == 1539
  with pytest.raises(ValueError, match='384-d, got text.dim=1536'):
    resolved(dim=1536)
  with pytest.raises(ValueError, match="unknown text encoder 'bert'"):
    resolved(encoder='bert')


def test_train_cli_openai_without_key_fails_before_training(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != 'OPENAI_API_KEY'}
  run = subprocess.run([sys.executable, 'train.py', '--config=configs/tiny.py',
                        '--config.text.encoder=openai', f'--workdir={tmp_path}/run'],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert run.returncode != 0 and 'set OPENAI_API_KEY' in run.stderr
  assert not (tmp_path / 'run').exists()


def test_missing_patient_values_follow_the_rule():
  np.testing.assert_array_equal(patient.sex_codes(['M', 'F', '', None]), [1.0, 0.0, 0.5, 0.5])
  fill = patient.missing_age_fill([30.0, np.nan, 50.0, 70.0, 90.0])
  assert fill == 60.0
  np.testing.assert_array_equal(patient.fill_ages([np.nan, 45.0], fill), [60.0, 45.0])
  with pytest.raises(ValueError, match='no training record has a known age'):
    patient.missing_age_fill([np.nan])
  with pytest.raises(ValueError, match='must be finite'):
    patient.condition_vector(np.zeros((1, 4)), [np.nan], [50.0], [60.0])
