"""The config schema: every field with its default, the reference's configuration, and the
defaults filled into a config saved before a field existed.

Every number that changes a run is here; `configs/*.py` override some of them, and any field can
be overridden on the command line (`--config.diffusion.batch_size=64`).
"""
import ml_collections

# evaluation.sweep_reports: single, the paper's sweep (every rate asked with sweep_report) |
# consistent, each rate asked with the rhythm it is (evaluation/evaluator.py, sweep_report).
SWEEP_REPORTS = ('consistent', 'single')


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  # Compute settings (they change speed, not the weights' layout):
  # float32: reference-exact | bfloat16: activations and matmuls in bfloat16, parameters,
  # optimiser state, norms and softmax in float32 (VAE and U-Net; the CLIP model stays float32).
  config.precision = 'float32'
  # auto: short convs as matmuls on CPU, XLA's convolutions elsewhere | matmul | xla
  config.conv_form = 'auto'

  config.data = ml_collections.ConfigDict()
  config.data.name = 'ludb'               # ludb | ptbxl | mimic_iv_ecg, or several: ptbxl+ludb
  config.data.tfds_dir = 'data/tfds'      # where the built ArrayRecord dataset goes
  config.data.manual_dir = ''             # raw folder(s), '+'-joined like name; '': bundled data/
  config.data.ptbxl_records = 'auto'      # records500 | records100 | auto (500 Hz if present)
  config.data.ptbxl_reports = 'scp'       # scp: English SCP descriptions | report: free text
  # Only PTB-XL records with ecg_id up to this (0: all): 1999 reads the same 1,987 records from a
  # full PhysioNet download as from a subset of those ids (configs/pretrained.py).
  config.data.ptbxl_max_ecg_id = 0
  config.data.num_workers = 0             # record-reading processes when building; 0: all CPUs
  config.data.patients_csv = ''           # mimic_iv_ecg: MIMIC-IV hosp/patients.csv (age, sex)

  config.text = ml_collections.ConfigDict()
  config.text.encoder = 'minilm'          # minilm (offline, 384-d) | openai | hashing
  config.text.model = ''                  # '': the encoder's default (openai: ada-002)
  config.text.dim = 0                     # 0: the encoder's own width
  config.text.batch_size = 8              # prompts per minilm forward pass (CPU: 4-16 best)
  config.text.cache_dir = '~/.cache/diffusets_jax/embeddings'  # '': no embedding cache
  config.text.openai = ml_collections.ConfigDict()
  config.text.openai.base_url = ''        # '': api.openai.com; the key is OPENAI_API_KEY
  config.text.openai.batch_size = 512     # prompts per request
  config.text.openai.max_retries = 6      # on 429, time-outs, 5xx, malformed responses
  config.text.openai.timeout_seconds = 60.0
  config.text.template = ml_collections.ConfigDict(dict(
      single='The report of the ECG is that {text}.',
      first='Most importantly, the 1st diagnosis is {text}.',
      further='As a supplementary condition, the {ordinal} diagnosis is {text}.',
      separator=' '))

  config.vae = ml_collections.ConfigDict()
  config.vae.channels = (128, 256, 512)
  config.vae.groups = 32
  config.vae.latent_channels = 4
  config.vae.batch_size = 256
  config.vae.epochs = 10
  config.vae.kl_anneal_epochs = 10       # KL weight (epoch + 1) / kl_anneal_epochs, capped at 1 ...
  config.vae.kl_weight = 1.0             # ... times this (1: the reference)
  config.vae.learning_rate = 1e-4        # one-cycle: starts here ...
  config.vae.peak_learning_rate = 2e-4   # ... peaks here
  config.vae.weight_decay = 0.01
  # Decode the posterior sample plus noise of std U(0, this) x the latent RMS, so the decoder
  # tolerates a denoiser's latent error (training/losses.py); 0 (the reference) adds none.
  config.vae.latent_noise = 0.0
  # z = posterior sample x latent_scale: the reference's 0.18215 leaves this project's latents
  # at std ~0.3, so most diffusion timesteps see almost pure noise; 1 / (latent std) gives
  # unit-variance latents (docs/pretrained.md). Not a weight: any value loads the same VAE.
  config.vae.latent_scale = 0.18215
  # The decoder writes I, II and V1-V6; III, aVR, aVL, aVF are computed from I and II, so every
  # ECG obeys the limb-lead relations exactly (models/limb_leads.py). False: the reference's
  # 12-channel output; True exports to it with the derivation folded into a 12-channel last conv.
  config.vae.derived_limb_leads = False
  # Weight of a multi-resolution spectral loss beside the squared error (training/losses.py):
  # log-magnitude STFT distance at several window lengths, which penalises blurred QRS edges
  # that the squared error lets pass. 0 (the reference) adds none.
  config.vae.spectral_weight = 0.0
  # Adversarial training against a 1-D patch discriminator (models/discriminator.py), the recipe
  # of latent-diffusion autoencoders: the generator term -mean D(reconstruction) is scaled so its
  # gradient at the decoder's last conv is this share of the squared error's (training/losses.py).
  # 0 (the reference) trains no discriminator.
  config.vae.adversarial_weight = 0.0
  config.vae.adversarial_start_step = 0     # the discriminator alone learns before this step
  config.vae.discriminator_channels = (64, 128, 256)
  config.vae.discriminator_learning_rate = 1e-4
  # False trains the decoder only, the encoder frozen: the latents stay those a U-Net was trained
  # on, so a sharper decoder can replace a trained model's (train.init_from names the start).
  config.vae.train_encoder = True

  config.unet = ml_collections.ConfigDict()
  config.unet.num_levels = 7
  config.unet.kernel = 7
  config.unet.heads = 8
  config.unet.bottleneck_attention_hidden = 32
  config.unet.bottleneck_heads = 4
  # Age and heart rate enter c raw in the reference; True rescales sex, age and heart rate to
  # about unit range inside the U-Net (conditioning/patient.py), so they do not drown the text.
  config.unet.normalize_patient = False
  # Harmonics of a sinusoid at the requested heart rate laid over the 10 s window and added to
  # every U-Net block (models/unet.py); 0 (the reference) adds none.
  config.unet.heart_rate_clock = 0
  # Dropout in every down and up block while training (models/unet.py), against overfitting a
  # small training set; 0 (the reference) drops nothing. It has no weights.
  config.unet.dropout = 0.0

  config.diffusion = ml_collections.ConfigDict()
  config.diffusion.num_timesteps = 1000
  config.diffusion.beta_start = 0.00085
  config.diffusion.beta_end = 0.012
  config.diffusion.batch_size = 512
  config.diffusion.epochs = 200
  config.diffusion.learning_rate = 5e-4  # cosine decay to final_lr_fraction * learning_rate
  config.diffusion.final_lr_fraction = 0.1
  config.diffusion.weight_decay = 0.01
  config.diffusion.latent_encode_batch_size = 64
  # Classifier-free guidance: this share of training examples gets the learned null condition
  # (0: off, as the reference; the U-Net then has no null-condition parameter).
  config.diffusion.condition_dropout = 0.0
  config.diffusion.ema_decay = 0.0       # EMA of the U-Net weights (e.g. 0.999); 0: off
  # Min-SNR-gamma loss weights, min(SNR_t, gamma) / SNR_t (training/losses.py): the low-noise
  # steps count less (0: off, as the reference; 5 is its authors' default). At 5 on the shipped
  # recipe it lost beats in the last steps and was worse on val
  # (docs/experiments/what_limits_it.md).
  config.diffusion.min_snr_gamma = 0.0
  # What the U-Net predicts (diffusion/prediction.py): 'eps', the noise, as the reference, or 'v',
  # the velocity sqrt(abar) eps - sqrt(1 - abar) x0. Every sampler serves both.
  config.diffusion.prediction = 'eps'
  # Heart-rate augmentation of the training latents (datasets/augmentation.py, a named
  # simplification): this many time-stretched copies of each training record, rate changed by a
  # factor of at most stretch_max_factor within its rate band (0: off, as the reference).
  config.diffusion.stretch_copies = 0
  config.diffusion.stretch_max_factor = 1.35
  # Beat-placement augmentation (datasets/augmentation.py, a named simplification): this many
  # copies of each training record with its beats moved by up to one RR interval, the end
  # continued by the record's own cycles; same rate, waves and text (0: off, as the reference).
  config.diffusion.shift_copies = 0
  # Fast rhythms are rare in the data (97 of the 1,649 training records of the 1,987 above
  # 100 bpm): each training latent whose heart rate is above fast_rate_bpm is drawn this many
  # more times per epoch (0: every latent once, as the reference).
  config.diffusion.fast_rate_extra_draws = 0
  config.diffusion.fast_rate_bpm = 100.0
  # Typed prompts are often one statement ('Sinus tachycardia'); most training reports list
  # several. True: each training record of two or more reports once more, prompted by one of
  # them alone (training/latents_stage.py); False: as the reference.
  config.diffusion.single_report_copies = False

  config.sampling = ml_collections.ConfigDict()
  config.sampling.sampler = 'ddpm'       # ddpm | ddim | dpmpp (DPM-Solver++ 2M)
  config.sampling.ddim_steps = 50
  # Fresh noise per DDIM step: 0 is deterministic DDIM, 1 the DDPM posterior's variance on every
  # step (DDIM over all 1000 steps at 1 is the reference's DDPM sampler;
  # docs/experiments/guidance_and_sampler_on_val.md).
  config.sampling.ddim_eta = 0.0
  config.sampling.clip = 1.0
  config.sampling.guidance_scale = 1.0   # 1: the conditional prediction alone (no guidance)
  # Classifier-free guidance only on the steps t >= this (the noisier ones); the steps below
  # take the conditional prediction alone. 0: every step. 200 and 400 cost fewer beats but not a
  # closer rate on the shipped model (docs/experiments/guidance_and_sampler_on_val.md).
  config.sampling.guidance_min_step = 0
  # Autoguidance (Karras et al. 2024), alone or on top of the guidance above: each step is also
  # pushed away from a weak model, the same U-Net with guidance_dropout of its block activations
  # dropped (one mask per step, shared by every ECG); 1: none. It needs no null condition
  # (docs/experiments/dropout_autoguidance.md).
  config.sampling.autoguidance_scale = 1.0
  config.sampling.guidance_dropout = 0.3
  # Autoguide only the steps t >= this; the steps below make no weak U-Net call. 0: every step.
  # From 150 up, the report is followed as without autoguidance, with fewer pauses than
  # without it (docs/experiments/autoguidance_interval.md).
  config.sampling.autoguidance_min_step = 0
  config.sampling.use_ema = True         # sample with the EMA weights where there are some

  # The ECG-text contrastive model of the evaluation (ResNet1d-18 + text MLP, spec section 6).
  config.clip = ml_collections.ConfigDict()
  config.clip.widths = (64, 128, 256, 512)  # ResNet-18 stage widths ...
  config.clip.blocks = (2, 2, 2, 2)         # ... and basic blocks per stage
  config.clip.kernel = 3
  config.clip.feature_dim = 64
  config.clip.text_hidden = 2048
  config.clip.temperature = 0.07          # initial; learnable
  config.clip.batch_size = 128
  config.clip.epochs = 50
  config.clip.learning_rate = 1e-3        # cosine decay to final_lr_fraction * learning_rate
  config.clip.final_lr_fraction = 0.1
  config.clip.weight_decay = 0.01

  config.evaluation = ml_collections.ConfigDict()
  config.evaluation.batch_size = 64       # ECGs per sampler call (one compile)
  config.evaluation.neighbours = 3        # k of the precision/recall manifolds
  # single: the paper's sweep, every rate asked with sweep_report | consistent: each rate with
  # the rhythm it is (Sinus bradycardia < 60 <= Sinus rhythm <= 100 < Sinus tachycardia).
  config.evaluation.sweep_reports = 'single'
  config.evaluation.sweep_report = 'Sinus rhythm'  # the paper's heart-rate sweep conditions
  config.evaluation.sweep_age = 50.0
  config.evaluation.sweep_sex = 'F'
  config.evaluation.sweep_rates = tuple(range(30, 151, 10))  # requested bpm
  config.evaluation.sweep_samples = 10    # ECGs per requested rate
  config.evaluation.grid_records = 4      # real-vs-generated pairs drawn in the report
  # Classifier two-sample tests (evaluation/two_sample.py): Adam steps per fold's classifier
  # (0: not run), folds, ECGs per set at most.
  config.evaluation.two_sample_steps = 200
  config.evaluation.two_sample_folds = 5
  config.evaluation.two_sample_max_per_class = 256

  config.train = ml_collections.ConfigDict()
  config.train.checkpoint_every_steps = 500
  # '' trains from scratch. 'pretrained' starts from the shipped model, a folder from a model
  # exported there (python -m diffusets_jax.pretrained --export_from WORKDIR --out FOLDER): its
  # VAE encodes the latents (no vae stage) and its U-Net (EMA) weights start the U-Net;
  # parameters it lacks (a new option's) keep their initial values. The optimiser starts afresh.
  config.train.init_from = ''
  # With init_from set: False takes only its VAE (and so its latents) and starts the U-Net
  # afresh, e.g. one of another size on the shipped model's latents.
  config.train.init_unet = True
  config.train.keep_checkpoints = 3
  # The diffusion loss on (at most heldout_records of) the val latents, with the sampling weights,
  # every this many steps -> diffusion/heldout.jsonl (training/heldout.py); 0: off.
  config.train.heldout_every_steps = 500
  config.train.heldout_records = 512
  config.train.log_every_steps = 10
  return config


def reference_config() -> ml_collections.ConfigDict:
  """The authors' DiffuSETS (paper-size VAE and U-Net, OpenAI ada-002 text, 1536-d): the
  configuration every weight-compatible option is off in (configs/diffusets.py)."""
  config = get_config()
  config.text.encoder = 'openai'
  config.text.model = 'text-embedding-ada-002'
  return config


def with_defaults(saved: dict) -> ml_collections.ConfigDict:
  """A saved config (a dict, as in config.json) with the fields it predates at their defaults:
  every newer option defaults to off, so an older run keeps its meaning."""
  merged = get_config().to_dict()

  def update(target, values):
    for key, value in values.items():
      # The prompt template is one value: a saved one replaces the default whole.
      if isinstance(value, dict) and isinstance(target.get(key), dict) and key != 'template':
        update(target[key], value)
      else:
        target[key] = value

  update(merged, saved)
  return ml_collections.ConfigDict(merged)
