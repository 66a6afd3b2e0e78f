"""Convert the authors' released DiffuSETS checkpoints into a diffusets-jax workdir, and back.

  python -m diffusets_jax.convert --vae vae_model.pth --unet unet_all.pth --out runs/reference
  python -m diffusets_jax.convert --export_from runs/reference --out exported/ [--format pth]

Import reads `.pth` with `torch.load(weights_only=True)` (PyTorch needed for this only; files
that need arbitrary code to unpickle are refused) or `.safetensors`. The workdir it writes loads in
sample.py and `Generator.from_workdir` like a trained one: config (text width inferred from the
checkpoint; 1536-d means OpenAI ada-002), the reference prompt template (sentences joined without
a space, as the authors' code), and the conditioning record. Export writes our params as state
dicts with exactly the reference names and shapes (vae_model.* as {'encoder', 'decoder'}): the
VAE and the U-Net weights the workdir samples with (the EMA where kept); options the reference
lacks are folded in (normalised patient inputs) or left out (the guidance's null condition, so the
export samples as guidance scale 1), so the reference code computes what this workdir does.
"""
import argparse
import sys

from diffusets_jax.store import open_model, reference


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog='python -m diffusets_jax.convert', description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n', 1)[1])
  parser.add_argument('--vae', help='reference vae_model.pth (or .safetensors) to import')
  parser.add_argument('--unet', help='reference unet_all.pth (or .safetensors) to import')
  parser.add_argument('--export_from', metavar='WORKDIR', help='workdir to export instead')
  parser.add_argument('--out', required=True, help='import: new workdir; export: directory')
  parser.add_argument('--format', default='pth', choices=['pth', 'safetensors'],
                      help='export file format (pth needs PyTorch)')
  parser.add_argument('--text_encoder', choices=['openai', 'minilm', 'hashing'],
                      help='the encoder the text embeddings came from (default: openai for '
                           '1536-d)')
  parser.add_argument('--text_model', help='that encoder\'s model name')
  args = parser.parse_args(argv)
  try:
    if args.export_from:
      for path in reference.export_reference(open_model(args.export_from), args.out,
                                            args.format):
        print(f'wrote {path}')
    else:
      if not (args.vae and args.unet):
        parser.error('import needs both --vae and --unet (or use --export_from WORKDIR)')
      out = reference.import_reference(args.vae, args.unet, args.out, args.text_encoder,
                                       args.text_model)
      print(f'wrote workdir {out}: sample with  python sample.py --workdir {out} --text ...')
  except (ValueError, FileNotFoundError, FileExistsError, ModuleNotFoundError) as error:
    print(f'error: {error}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
