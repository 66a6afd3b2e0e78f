"""Trains the micro config's VAE for 4 steps (checkpoints at 2 and 4) and encodes the latents
in one workdir, as one process of a multi-process run
(--num_processes > 1) or alone. test_training.py runs it as 2 processes x 2 virtual CPU devices
and as 1 process x 4 devices, and compares the two workdirs.

  python tests/multihost_training.py --tfds_dir D --workdir W [--num_processes 2 --process_id I
      --port 12355]
"""
import argparse
import sys

sys.path.insert(0, '.')


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--tfds_dir', required=True)
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--num_processes', type=int, default=1)
  parser.add_argument('--process_id', type=int, default=0)
  parser.add_argument('--port', type=int, default=12355)
  args = parser.parse_args()
  from diffusets_jax.training import distributed
  from diffusets_jax.store import workdir as workdirs
  from diffusets_jax.training import latents_stage
  from diffusets_jax.training import vae_stage
  if args.num_processes > 1:
    distributed.initialize(f'127.0.0.1:{args.port}', args.num_processes, args.process_id)
  from diffusets_jax import config_validation
  from tests.conftest import micro_config
  config = micro_config(args.tfds_dir)
  config = config_validation.validate(config)
  workdirs.save_config(args.workdir, config)
  state = vae_stage.train_vae(config, args.workdir, max_steps=4)
  latents_stage.encode_latents(config, args.workdir, state.params)


if __name__ == '__main__':
  main()
