"""``train-ser``: train an emotion head on labelled recordings and evaluate it speaker-independently."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import asdict, replace
from pathlib import Path

from workers.core.errors import ConfigError
from workers.entrypoints.cli.options import command_settings, finish_command

DESCRIPTION = """\
Train the whisper-head emotion model on your own labelled recordings.

DIR holds audio files (anything the pipeline decodes) and labels.csv with at least the columns
file,label,speaker (file relative to DIR). Several DIRs are several corpora: their speakers are
named DIR/SPEAKER, each corpus is also scored by a head trained on the others only
(leave-one-corpus-out: how the head does on recordings unlike any it was trained on, as a
user's are), and --balance corpora gives every corpus the same weight in training. --add LABEL=FOLDER
adds every recording of a folder under one label (read speech as neutral, say), the folder counting
as one speaker. Features are made by the engine's own code path
(Whisper's encoder over the SER windows, pooled as --pooling says), in float32 on the CPU so
that the figures come back on another CPU. The head is evaluated speaker-independently
(leave-one-speaker-out; with one DIR a fixed split holding out named speakers, with several
leave-one-corpus-out), per clip and on continuous audio; a temperature that calibrates its
probabilities and the threshold under which a segment's emotion is marked uncertain are fitted on
those held-out predictions (leave-one-corpus-out with several DIRs, else leave-one-speaker-out),
with the expected calibration error before and after; then it is trained on every speaker and
written with its model card to OUT:

  OUT/head.npz        the head (NumPy arrays, no pickle)
  OUT/MODEL_CARD.md   data, features, metrics, the command that made it
  OUT/encoder         a link to the Whisper model it was trained on

Use it with SER_ENGINE=whisper-head SER_MODEL=OUT. Needs scikit-learn (requirements-dev.txt pins
the version the default head was trained with). The default head's data carry research-only and
non-commercial terms (see its model card); a head trained here on your own recordings carries yours."""


def register(sub: argparse._SubParsersAction) -> None:
    from workers.training.ser_training import BALANCES, TrainOptions
    from workers.engines.whisper_encoder import LOUDNESS, POOLINGS
    from workers.engines.whisper_layers import LAYER_MIXES

    defaults = TrainOptions()
    p = sub.add_parser("train-ser", help="train and evaluate an emotion head on labelled recordings",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", type=Path, nargs="+", metavar="DIR",
                   help="folder with the audio and labels.csv; several: one corpus each")
    p.add_argument("-o", "--out", type=Path, metavar="OUT", help="model folder to write (default: ./ser-<name>)")
    p.add_argument("--name", help="the head's name (default: DIR's name and the encoder's)")
    p.add_argument("--encoder", type=Path, metavar="PATH",
                   help="CTranslate2 Whisper model whose encoder makes the features (default: the multilingual "
                        "base model assembled by setup)")
    p.add_argument("--window-seconds", type=float, default=defaults.window_seconds, help="window length [%(default)s]")
    p.add_argument("--hop-seconds", type=float, default=defaults.hop_seconds, help="window step [%(default)s]")
    p.add_argument("--c", type=float, default=defaults.c,
                   help="inverse regularisation strength of the logistic regression [%(default)s]")
    p.add_argument("--no-streams", action="store_true",
                   help="train on isolated clips only (no windows cut from joined same-label clips)")
    p.add_argument("--add", action="append", default=[], metavar="LABEL=FOLDER[@SPEAKER]",
                   help="also train on every audio file under FOLDER as LABEL (repeatable), e.g. neutral=read-speech/: "
                        "recordings known to carry one label. Each folder counts as one speaker in the evaluations, "
                        "which also report the added folders apart; folders given the same @SPEAKER count as one "
                        "(the same reader in two folders)")
    p.add_argument("--pooling", choices=POOLINGS, default=defaults.pooling,
                   help="how a window's encoder frames become features [%(default)s]")
    p.add_argument("--loudness", choices=LOUDNESS, default=defaults.loudness,
                   help="mel-peak: each window's log-mel shifted to a fixed peak (removes the recording's gain) "
                        "[%(default)s]")
    p.add_argument("--layers", default="", metavar="K[,K]",
                   help="encoder layers whose frames are pooled: 0 is the input of the first block, the encoder's "
                        "depth (6 for base) its output; several are concatenated, or averaged with --layer-mix mean "
                        "(default: the last layer, through CTranslate2)")
    p.add_argument("--layer-mix", choices=LAYER_MIXES, default=defaults.layer_mix,
                   help="several --layers: side by side (concat) or averaged (mean) [%(default)s]")
    p.add_argument("--balance", choices=BALANCES, default=defaults.balance,
                   help="labels: every label weighs the same in training; corpora: every (corpus, label) "
                        "does [%(default)s]")
    p.add_argument("--compute-type", default=defaults.compute_type,
                   help="the encoder's compute type for training and evaluation; float32 agrees across CPUs, "
                        "int8 (the engine's on CPU) does not [%(default)s]")
    p.add_argument("--labels", default="", metavar="A,B",
                   help="the labels to expect: any other label in a labels.csv is an error (default: what the "
                        "folders hold, which must be the same in each)")
    p.add_argument("--source", action="append", default=[], metavar="TEXT",
                   help="a data source, its licence and citation, for the model card (repeatable)")
    p.add_argument("--licence-note", default="",
                   help="a short note on the data's terms, kept in the head and shown in engines.ser of results")
    p.add_argument("--test-speakers", default="", metavar="A,B",
                   help="speakers held out in the fixed split (default: the last quarter in sorted order)")
    p.add_argument("--min-clips-per-label", type=int, default=defaults.min_clips_per_label,
                   help="refuse labels with fewer clips [%(default)s]")
    p.add_argument("--seed", type=int, default=defaults.seed, help="seed of the stream shuffling [%(default)s]")
    p.add_argument("--dataset-name", help="how the model card names the data (default: DIR's name)")
    p.add_argument("--citation", default="", help="citation of the data set, for the model card")
    p.add_argument("--cpu-threads", type=int, default=0, help="encoder threads; 0: every CPU [%(default)s]")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    finish_command(p, cmd_train_ser, only=("models_dir",))


def _command(args: argparse.Namespace) -> str:
    """The command line that makes this head again: DIR and every option that shapes the head."""
    words = ["python", "-m", "workers", "train-ser", *map(str, args.data)]
    for flag in ("--out", "--name", "--encoder", "--window-seconds", "--hop-seconds", "--c", "--pooling",
                 "--loudness", "--layers", "--layer-mix", "--balance", "--compute-type", "--labels", "--test-speakers",
                 "--min-clips-per-label", "--seed", "--dataset-name", "--citation", "--licence-note"):
        value = getattr(args, flag[2:].replace("-", "_"))
        if flag == "--layer-mix" and not args.layers:
            continue
        if value not in (None, ""):
            words += [flag, str(value)]
    for added in args.add:
        words += ["--add", added]
    for source in args.source:
        words += ["--source", source]
    return shlex.join(words + (["--no-streams"] if args.no_streams else []))


def _layers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(k) for k in text.split(",") if k.strip())
    except ValueError as e:
        raise ConfigError(f"--layers {text!r}: give layer numbers, e.g. 3 or 2,4") from e


def cmd_train_ser(args: argparse.Namespace) -> int:
    import sys

    from workers.engines.whisper_layers import feature_encoder
    from workers.setup.models import WHISPER_BASE
    from workers.training import ser_training as training

    settings = command_settings(args)
    try:
        import sklearn  # noqa: F401 - fail before the slow part
    except ModuleNotFoundError as e:
        raise ConfigError("train-ser needs scikit-learn: pip install scikit-learn") from e
    options = training.TrainOptions(
        window_seconds=args.window_seconds, hop_seconds=args.hop_seconds, c=args.c, streams=not args.no_streams,
        min_clips_per_label=args.min_clips_per_label, seed=args.seed,
        test_speakers=tuple(s.strip() for s in args.test_speakers.split(",") if s.strip()),
        pooling=args.pooling, loudness=args.loudness, balance=args.balance, compute_type=args.compute_type,
        layers=_layers(args.layers), layer_mix=args.layer_mix)
    if options.layers and options.compute_type != "float32":
        raise ConfigError("--layers runs the encoder's blocks in torch in float32: leave --compute-type float32")
    if options.window_seconds <= 0 or not 0 < options.hop_seconds <= options.window_seconds or options.c <= 0:
        raise ConfigError("--window-seconds and --c must be positive and --hop-seconds in (0, window]")
    encoder_path = args.encoder or Path(settings.models.models_dir) / WHISPER_BASE
    dataset = training.read_datasets(args.data, min_clips_per_label=options.min_clips_per_label,
                                     labels=tuple(s.strip() for s in args.labels.split(",") if s.strip()))
    for added in args.add:
        label, equals, folder = added.partition("=")
        if not equals or not label or not folder:
            raise ConfigError(f"--add {added!r}: give LABEL=FOLDER, e.g. neutral=read-speech/")
        named, at, speaker = folder.rpartition("@")
        if at and named and speaker and "/" not in speaker and not Path(folder).is_dir():
            folder = named
        else:
            speaker = ""
        dataset = training.add_folder(dataset, label.strip(), Path(folder), speaker.strip())
    encoder = feature_encoder(encoder_path, layers=options.layers, layer_mix=options.layer_mix, device="cpu",
                              compute_type=options.compute_type, cpu_threads=args.cpu_threads)
    name = args.name or f"{'+'.join(d.resolve().name for d in args.data)}-{encoder.model_id}"
    out = args.out or Path(f"ser-{name}")
    print(f"{len(dataset.clips)} clips, {len(dataset.speakers)} speakers ({', '.join(dataset.speakers)}), "
          f"labels {', '.join(dataset.labels)}; encoder {encoder.model_id} ({options.compute_type})", file=sys.stderr)
    print(training.length_report(dataset, options), file=sys.stderr)
    with training.progress_bar(training.feature_seconds(dataset, options),
                               enabled=not args.no_progress and sys.stderr.isatty()) as bar:
        features = training.extract_features(dataset, encoder, options, progress=bar.update)
    evaluations, calibration = training.evaluate_and_calibrate(dataset, features, options, encoder=encoder)
    for evaluation in evaluations:
        print(training.format_evaluation(evaluation, dataset.labels))
    print(training.format_calibration(calibration))
    command = _command(args)
    record = {"dataset": args.dataset_name or ", ".join(d.resolve().name for d in args.data),
              "citation": args.citation, "corpora": list(dataset.corpora), "sources": list(args.source),
              "speakers": list(dataset.speakers), "added": list(dataset.added), "clips": len(dataset.clips),
              "options": training.options_record(options),
              "metrics": training.metrics_record(evaluations), "calibration": asdict(calibration),
              "command": command}
    head = replace(training.fit_head(dataset, features, dataset.speakers, options, name=name, encoder=encoder,
                                     training=record, licence=args.licence_note),
                   temperature=calibration.temperature, uncertain_below=calibration.uncertain_below)
    card = training.model_card(head, dataset, evaluations, options, dataset_name=record["dataset"],
                               citation=args.citation, command=command, sources=args.source,
                               calibration=calibration)
    training.write_model(out, head, card, encoder_path)
    print(f"wrote {out}/ (head {head.head_id}); use it with: SER_ENGINE=whisper-head SER_MODEL={out}")
    return 0
