"""Run by tests/test_sampling.py with 4 virtual CPU devices: samples the shipped model on all of
them and on the first alone, and prints what the test compares as one JSON line."""
import json

import numpy as np
import jax

from diffusets_jax.generate import Generator


def main():
  everywhere = Generator.pretrained()
  one = Generator.pretrained(devices=jax.local_devices()[:1])
  cond = everywhere.conditions([['Sinus rhythm']] * 6, [50] * 6, ['F'] * 6,
                               [60, 70, 80, 90, 100, 110])
  # Six ECGs in batches of 4: the last batch is padded, as evaluate.py's are.
  batched = [g.generate_from_conditions(cond, 'ddim', 4, seed=3, batch_size=4)
             for g in (everywhere, one)]
  guided = [g.generate('Sinus bradycardia', 60, 'M', 50, num=4, sampler='ddim', steps=4,
                       guidance_scale=3.0) for g in (everywhere, one)]
  ecg, _ = everywhere.sample_batch(cond[:4], everywhere.settings('ddim', 4, guidance_scale=1.0),
                                   jax.random.PRNGKey(0))
  print(json.dumps(dict(
      devices=len(everywhere.devices),
      devices_holding_the_batch=len(ecg.sharding.device_set),
      rows_per_device=[s.data.shape[0] for s in ecg.addressable_shards],
      batched_difference=float(np.abs(batched[0] - batched[1]).max()),
      guided_difference=float(np.abs(guided[0] - guided[1]).max()),
      amplitude=float(np.abs(batched[1]).max()),
      batched_shape=list(batched[0].shape))))


if __name__ == '__main__':
  main()
