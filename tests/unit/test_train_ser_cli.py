"""``python -m workers train-ser``: a model folder from labelled files, and clear errors for bad data sets."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.audio_factory import encode, noise, tone
from workers.entrypoints.cli.main import main
from workers.engines.ser_head import CARD_FILE, HEAD_FILE, SerHead
from workers.engines.ser_whisper import WhisperHeadEmotionEngine


def write_dataset(folder: Path, rows: list[dict[str, str]], audio: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in audio.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    with (folder / "labels.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["file", "label", "speaker"])
        writer.writeheader()
        writer.writerows(rows)
    return folder


def tones_and_noise(folder: Path, speakers=("a", "b", "c"), per_label: int = 5) -> Path:
    rows, audio = [], {}
    for speaker in speakers:
        for k in range(per_label):
            for label, samples in (("calm", tone(1.0 + k / 4, freq=200 + 60 * k, amplitude=0.2)),
                                   ("angry", noise(1.0 + k / 4, amplitude=0.3, seed=k))):
                name = f"clips/{speaker}_{label}_{k}.wav"
                audio[name] = encode(samples)
                rows.append({"file": name, "label": label, "speaker": speaker, "note": "extra columns are fine"})
    return write_dataset(folder, rows, audio)


def test_train_ser_writes_a_model_the_engine_loads_and_reports_speaker_independent_scores(
        tmp_path, models_dir, capsys) -> None:
    data = tones_and_noise(tmp_path / "data")
    out = tmp_path / "model"
    assert main(["train-ser", str(data), "-o", str(out), "--name", "toy", "--models-dir", str(models_dir),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "leave-one-speaker-out" in printed and "fixed split: test speakers c" in printed
    assert "unweighted accuracy 1.000" in printed, printed
    head = SerHead.load(out / HEAD_FILE)
    assert head.labels == ("angry", "calm") and head.training["speakers"] == ["a", "b", "c"]
    assert head.training["command"].startswith(f"python -m workers train-ser {data} --out {out} --name toy")
    card = (out / CARD_FILE).read_text()
    assert f"`{head.head_id}`" in card and "| a | 5 | 5 |" in card and "## Caveats" in card
    engine = WhisperHeadEmotionEngine(out, device="cpu")
    scores = np.array([w.scores for w in engine.classify(noise(3.0, amplitude=0.3, seed=9)).windows])
    assert scores[:, 0].mean() > 0.8, "noise is 'angry'"


def test_a_folder_added_under_one_label_trains_as_one_speaker_and_is_scored_apart(tmp_path, models_dir,
                                                                                   capsys) -> None:
    data = tones_and_noise(tmp_path / "data")
    calm = tmp_path / "more-calm"
    for k in range(4):  # no labels.csv: every recording of the folder is one label
        (calm / "sub").mkdir(parents=True, exist_ok=True)
        (calm / "sub" / f"hum{k}.flac").write_bytes(encode(tone(1.5, freq=230 + 50 * k, amplitude=0.2)))
    (calm / "README.txt").write_text("not audio, left out")
    out = tmp_path / "model"
    assert main(["train-ser", str(data), "--add", f"calm={calm}", "-o", str(out), "--models-dir", str(models_dir),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "leave-one-speaker-out: the labelled speakers" in printed
    assert "fixed split: test speakers c" in printed, "the fixed split holds out labelled speakers only"
    added = printed.split("leave-one-speaker-out: the added folders")[1].split("fixed split")[0]
    assert "(4 clips)" in added and "recall calm 1.00" in added, added
    head = SerHead.load(out / HEAD_FILE)
    assert head.training["speakers"] == ["+more-calm", "a", "b", "c"] and head.training["added"] == ["+more-calm"]
    assert f"--add calm={calm}" in head.training["command"]
    card = (out / CARD_FILE).read_text()
    assert "| +more-calm | 0 | 4 |" in card and "as `calm`" in card


@pytest.mark.parametrize("added, message", [
    ("sad=FOLDER", "'sad' is not a label of the data set (labels: angry, calm)"),
    ("calm=EMPTY", "no audio files"),
    ("calm", "give LABEL=FOLDER"),
])
def test_a_bad_added_folder_is_refused_with_a_clear_error(tmp_path, models_dir, capsys, added, message) -> None:
    data = tones_and_noise(tmp_path / "data", per_label=5)
    (tmp_path / "empty").mkdir()
    added = added.replace("FOLDER", str(data)).replace("EMPTY", str(tmp_path / "empty"))
    assert main(["train-ser", str(data), "--add", added, "-o", str(tmp_path / "out"), "--models-dir",
                 str(models_dir), "--no-progress"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("breakage, message", [
    ("no labels.csv", "labels.csv is missing"),
    ("unknown column", "has the columns file,emotion,speaker; it needs file,label,speaker (missing: label)"),
    ("missing file", "line 2: clips/gone.wav does not exist"),
    ("one speaker", "names one speaker (a)"),
    ("too few clips", "too few clips for 'calm' (2)"),
    ("not audio", "line 2: notes.wav cannot be used"),
])
def test_bad_data_sets_are_refused_with_a_clear_error(tmp_path, models_dir, capsys, breakage, message) -> None:
    folder = tmp_path / "data"
    wav = encode(tone(1.0))
    if breakage == "no labels.csv":
        folder.mkdir()
    elif breakage == "unknown column":
        write_dataset(folder, [{"file": "x.wav", "emotion": "calm", "speaker": "a"}], {"x.wav": wav})
    elif breakage == "missing file":
        write_dataset(folder, [{"file": "clips/gone.wav", "label": "calm", "speaker": "a"}], {})
    elif breakage == "one speaker":
        tones_and_noise(folder, speakers=("a",))
    elif breakage == "too few clips":
        rows = [{"file": "x.wav", "label": "angry", "speaker": s} for s in "abcdef"]
        rows += [{"file": "x.wav", "label": "calm", "speaker": s} for s in "ab"]
        write_dataset(folder, rows, {"x.wav": wav})
    elif breakage == "not audio":
        write_dataset(folder, [{"file": "notes.wav", "label": "calm", "speaker": "a"}], {"notes.wav": b"hello" * 99})
    assert main(["train-ser", str(folder), "-o", str(tmp_path / "out"), "--models-dir", str(models_dir)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(folder) in err, "the error names the folder"
    assert not (tmp_path / "out").exists()


def test_several_corpora_are_scored_by_speaker_and_by_corpus_left_out(tmp_path, models_dir, capsys) -> None:
    one = tones_and_noise(tmp_path / "one", speakers=("a", "b"))
    two = tones_and_noise(tmp_path / "two", speakers=("a", "c"))  # "a" again: another person in another corpus
    out = tmp_path / "model"
    assert main(["train-ser", str(one), str(two), "-o", str(out), "--pooling", "mean+std", "--loudness", "mel-peak",
                 "--balance", "corpora", "--licence-note", "toy data, no terms", "--source", "one: made here",
                 "--models-dir", str(models_dir), "--no-progress"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    for name in ("leave-one-speaker-out: one", "leave-one-corpus-out: one", "leave-one-corpus-out: two",
                 "leave-one-corpus-out: average over corpora"):
        assert name in printed, printed
    assert "fixed split" not in printed
    assert "one: 20 clips, 20 shorter than one 3 s window (used padded)" in captured.err
    head = SerHead.load(out / HEAD_FILE)
    assert head.training["speakers"] == ["one/a", "one/b", "two/a", "two/c"]
    assert head.training["corpora"] == ["one", "two"]
    assert (head.pooling, head.loudness, head.licence, head.dims) == (
        "mean+std", "mel-peak", "toy data, no terms", 1024)
    assert head.training["options"]["compute_type"] == "float32"
    metrics = {m["name"]: m for m in head.training["metrics"]}
    average = metrics["leave-one-corpus-out: average over corpora"]["clips"]
    per_corpus = [metrics[f"leave-one-corpus-out: {c}"]["clips"]["unweighted_accuracy"] for c in ("one", "two")]
    assert average["unweighted_accuracy"] == pytest.approx(np.mean(per_corpus), abs=1e-4) and average["clips"] == 40
    card = (out / CARD_FILE).read_text()
    assert "## Sources and licences" in card and "- one: made here" in card and "toy data, no terms" in card
    assert "--pooling mean+std --loudness mel-peak --balance corpora" in head.training["command"]
    engine = WhisperHeadEmotionEngine(out, device="cpu")
    scores = np.array([w.scores for w in engine.classify(noise(3.0, amplitude=0.3, seed=9)).windows])
    assert scores[:, 0].mean() > 0.8, "noise is 'angry'"


@pytest.mark.parametrize("breakage, message", [
    ("labels differ", "one/labels.csv has no clip of 'sad', which other folders have"),
    ("unknown label", "one/labels.csv has the label 'angry', not one of --labels calm,sad"),
    ("one speaker", "two/labels.csv names one speaker (two/a)"),
    ("no labels.csv", "two/labels.csv is missing"),
    ("same name", "two labelled folders are named one"),
])
def test_bad_corpus_folders_are_refused_with_an_error_naming_the_folder(tmp_path, models_dir, capsys, breakage,
                                                                           message) -> None:
    one = tones_and_noise(tmp_path / "one")
    two = tmp_path / "two"
    extra = []
    if breakage == "labels differ":
        rows = [{"file": "x.wav", "label": label, "speaker": s} for s in "abc" for label in ("angry", "calm", "sad")
                for _ in range(3)]
        write_dataset(two, rows, {"x.wav": encode(tone(1.0))})
    elif breakage == "unknown label":
        tones_and_noise(two)
        extra = ["--labels", "calm,sad"]
    elif breakage == "one speaker":
        tones_and_noise(two, speakers=("a",))
    elif breakage == "no labels.csv":
        two.mkdir()
    elif breakage == "same name":
        two = tones_and_noise(tmp_path / "elsewhere" / "one")
    assert main(["train-ser", str(one), str(two), *extra, "-o", str(tmp_path / "out"),
                 "--models-dir", str(models_dir)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not (tmp_path / "out").exists()


def test_a_label_that_one_speaker_holds_almost_alone_is_refused_before_its_fold_lacks_it(tmp_path, models_dir,
                                                                                          capsys) -> None:
    rows = [{"file": "x.wav", "label": "angry", "speaker": s} for s in "abc" for _ in range(5)]
    rows += [{"file": "x.wav", "label": "calm", "speaker": "a"} for _ in range(5)]
    rows += [{"file": "x.wav", "label": "calm", "speaker": "b"}]
    folder = write_dataset(tmp_path / "data", rows, {"x.wav": encode(tone(1.0))})
    assert main(["train-ser", str(folder), "-o", str(tmp_path / "out"), "--models-dir", str(models_dir)]) == 2
    assert "without speaker a too few clips are left to train on: 'calm' (1)" in capsys.readouterr().err


def test_folders_added_as_one_speaker_are_never_on_both_sides_of_a_split(tmp_path, models_dir, capsys) -> None:
    data = tones_and_noise(tmp_path / "data")
    folders = []
    for name in ("audiobook", "samples"):  # the same reader in two folders
        folder = tmp_path / name
        folder.mkdir()
        for k in range(3):
            (folder / f"{name}{k}.flac").write_bytes(encode(tone(1.5, freq=230 + 50 * k, amplitude=0.2)))
        folders.append(folder)
    out = tmp_path / "model"
    assert main(["train-ser", str(data), "--add", f"calm={folders[0]}@reader", "--add", f"calm={folders[1]}@reader",
                 "-o", str(out), "--models-dir", str(models_dir), "--no-progress"]) == 0
    added = capsys.readouterr().out.split("leave-one-speaker-out: the added folders")[1].split("fixed split")[0]
    assert "(6 clips)" in added, added
    head = SerHead.load(out / HEAD_FILE)
    assert head.training["speakers"] == ["+reader", "a", "b", "c"] and head.training["added"] == ["+reader"]
    assert "| +reader | 0 | 6 |" in (out / CARD_FILE).read_text()
    twin = tmp_path / "elsewhere" / "audiobook"  # another folder of the same name: another speaker, or say so
    shutil.copytree(folders[0], twin)
    assert main(["train-ser", str(data), "--add", f"calm={folders[0]}", "--add", f"calm={twin}",
                 "-o", str(tmp_path / "other"), "--models-dir", str(models_dir)]) == 2
    assert f"already named +audiobook (name the speaker: --add calm={twin}@SPEAKER)" in capsys.readouterr().err


def test_layers_are_trained_recorded_in_the_head_and_command_and_bad_ones_refused(tmp_path, models_dir,
                                                                                  capsys) -> None:
    data = tones_and_noise(tmp_path / "data", per_label=3)
    out = tmp_path / "model"
    assert main(["train-ser", str(data), "-o", str(out), "--layers", "2,4", "--layer-mix", "mean", "--no-streams",
                 "--min-clips-per-label", "3", "--models-dir", str(models_dir), "--no-progress"]) == 0
    head = SerHead.load(out / HEAD_FILE)
    assert (head.layers, head.layer_mix, head.dims) == ((2, 4), "mean", 512)
    assert "--layers 2,4 --layer-mix mean" in head.training["command"]
    assert "layers 2, 4, averaged" in (out / CARD_FILE).read_text()
    assert WhisperHeadEmotionEngine(out, device="cpu").encoder.layers == (2, 4)
    plain = tmp_path / "plain"
    assert main(["train-ser", str(data), "-o", str(plain), "--no-streams", "--min-clips-per-label", "3",
                 "--models-dir", str(models_dir), "--no-progress"]) == 0
    assert "--layer" not in SerHead.load(plain / HEAD_FILE).training["command"], "no option, nothing recorded"
    capsys.readouterr()
    for bad, message in (("9", "layers 0 .* to 6"), ("x", "give layer numbers")):
        assert main(["train-ser", str(data), "-o", str(tmp_path / "bad"), "--layers", bad,
                     "--models-dir", str(models_dir), "--no-progress"]) != 0
        assert re.search(message, capsys.readouterr().err), bad
