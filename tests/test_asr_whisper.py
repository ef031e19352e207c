"""Whisper: the CTranslate2 reader and converter against the bundled tiny.en weights, the
differentiable log-mel front end against Hugging Face's feature extractor, the recogniser's
mechanics on a tiny random-weight Whisper, and (slow, with ../shared/data) the real tiny.en."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="Whisper needs transformers (pip install transformers)")
tokenizers = pytest.importorskip("tokenizers", reason="Whisper needs tokenizers (pip install tokenizers)")

from asrguard.asr.base import AudioBatch, missing_capabilities  # noqa: E402
from asrguard.asr.registry import load_recognizer, parse_spec  # noqa: E402
from asrguard.asr.whisper import WhisperRecognizer, log_mel  # noqa: E402
from asrguard.asr.whisper.decoding import top_classes  # noqa: E402
from asrguard.asr.whisper.convert import (TINY_EN_CONFIG, bundled_source, convert_state_dict,  # noqa: E402
                                          ensure_converted, tensor_sources, verify)
from asrguard.asr.whisper.ctranslate2_file import CTranslate2Model, read_ctranslate2  # noqa: E402
from asrguard.errors import ConfigError, InvalidAudioError, ModelFileError  # noqa: E402
from asrguard.fileio import sha256_file  # noqa: E402

RATE = 16000


def _bundled():
    try:
        return bundled_source()
    except ModelFileError as exc:
        pytest.skip(str(exc))


def noise(n: int, seed: int) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).uniform(-1, 1, n)).astype(np.float32)


SHORT, LONG = noise(RATE // 2, 0), noise(RATE, 1)  # 0.5 s and 1 s


# --------------------------------------------------------------------------- converter fidelity
@pytest.fixture(scope="module")
def ct2():
    """The bundled CTranslate2 model.bin, read once (75 MB)."""
    return read_ctranslate2(_bundled() / "model.bin")


@pytest.fixture(scope="module")
def state(ct2):
    return convert_state_dict(ct2, TINY_EN_CONFIG)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """``$ASRGUARD_CACHE`` pointed at a module tmp dir for the whole module (the user's cache stays untouched)."""
    root = tmp_path_factory.mktemp("asrguard-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASRGUARD_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def converted(cache):
    """tiny.en converted once per module, into the tmp cache."""
    _bundled()
    folder = ensure_converted("tiny.en")
    assert folder == cache / "whisper-tiny.en"
    return folder


def test_reader_parses_the_bundled_whisper_spec(ct2):
    assert ct2.spec == "WhisperSpec"
    assert ct2.variables["encoder/conv1/weight"].shape == (384, 80, 3)
    assert ct2.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert ct2.get("decoder/projection/weight") is ct2.variables["decoder/embeddings/weight"]


def test_every_hf_tensor_is_the_exact_ct2_slice(ct2, state):
    sources = list(tensor_sources(TINY_EN_CONFIG))
    assert len({hf for hf, _, _ in sources}) == len(sources) == len(state)
    for hf_name, ct2_name, rows in sources:
        source = ct2.get(ct2_name)
        assert source.dtype == np.float16, ct2_name
        expected = source if rows is None else source[rows]
        converted = state[hf_name]
        assert converted.dtype == np.float32 and converted.flags.c_contiguous, hf_name
        assert converted.shape == expected.shape, hf_name
        assert np.array_equal(converted, expected.astype(np.float32)), hf_name
        assert np.array_equal(converted.astype(np.float16).view(np.uint16), expected.view(np.uint16)), hf_name


def test_every_ct2_weight_is_used_and_fused_weights_split_into_a_partition(ct2):
    used: dict[str, list] = {}
    for hf_name, ct2_name, rows in tensor_sources(TINY_EN_CONFIG):
        used.setdefault(ct2.aliases.get(ct2_name, ct2_name), []).append((hf_name, rows))
    weights = {name for name, array in ct2.variables.items() if array.dtype == np.float16}
    flags = {name for name, array in ct2.variables.items() if array.dtype != np.float16}
    assert all(ct2.variables[name].ndim == 0 and ct2.variables[name].dtype in (np.int8, np.int16) for name in flags)
    assert weights - set(used) == set(), "CTranslate2 weights no Hugging Face tensor takes"
    assert set(used) <= weights
    # the q/k/v (self-attention) and k/v (cross-attention) weight slices cover every row once
    for name, takers in used.items():
        slices = [rows for hf, rows in takers if hf.endswith(".weight") and rows is not None]
        if name.endswith("/weight") and slices:
            covered = np.concatenate([np.arange(ct2.variables[name].shape[0])[s] for s in slices])
            assert sorted(covered.tolist()) == list(range(ct2.variables[name].shape[0])), name
            assert len(slices) in (2, 3), name


def test_converted_state_dict_fits_the_hf_architecture(state):
    config = transformers.WhisperConfig(**TINY_EN_CONFIG)
    with torch.device("meta"):
        model = transformers.WhisperForConditionalGeneration(config)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert set(expected) - set(state) == {"proj_out.weight"}  # tied to the token embedding
    assert set(state) - set(expected) == set()
    assert all(tuple(state[name].shape) == expected[name] for name in state)


def test_convert_writes_a_verified_folder(converted, state):
    from safetensors.numpy import load_file

    assert sorted(p.name for p in converted.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    config = json.loads((converted / "config.json").read_text())
    meta = config.pop("asrguard")
    assert config == TINY_EN_CONFIG
    assert meta["source_sha256"] == sha256_file(_bundled() / "model.bin")
    checksum = verify(converted)
    assert checksum == meta["weights_sha256"] == sha256_file(converted / "model.safetensors")
    assert (converted / "tokenizer.json").read_bytes() == (_bundled() / "tokenizer.json").read_bytes()
    written = load_file(converted / "model.safetensors")
    assert set(written) == set(state)
    assert all(written[name].dtype == np.float32 and np.array_equal(written[name], state[name]) for name in state)
    # converted once: a second call reuses the folder
    before = (converted / "model.safetensors").stat().st_mtime_ns
    assert ensure_converted("tiny.en") == converted
    assert (converted / "model.safetensors").stat().st_mtime_ns == before


def test_verify_and_from_folder_refuse_a_changed_byte(converted):
    weights = converted / "model.safetensors"
    checksum = verify(converted)
    offset = weights.stat().st_size // 2
    with open(weights, "r+b") as handle:
        handle.seek(offset)
        original = handle.read(1)
        try:
            handle.seek(offset)
            handle.write(bytes([original[0] ^ 0x01]))
            handle.flush()
            with pytest.raises(ModelFileError, match="does not match its recorded SHA-256"):
                verify(converted)
            with pytest.raises(ModelFileError, match="SHA-256"):
                WhisperRecognizer.from_folder(converted)
        finally:
            handle.seek(offset)
            handle.write(original)
    assert verify(converted) == checksum


def test_verify_refuses_an_unreadable_config(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="unreadable Whisper config.json"):
        verify(tmp_path)


@pytest.mark.parametrize("cut", ["10", "half", "minus1"])
def test_truncated_model_bin_is_refused(tmp_path, cut):
    data = (_bundled() / "model.bin").read_bytes()
    keep = {"10": 10, "half": len(data) // 2, "minus1": len(data) - 1}[cut]
    path = tmp_path / "model.bin"
    path.write_bytes(data[:keep])
    with pytest.raises(ModelFileError, match="truncated CTranslate2 file"):
        read_ctranslate2(path)


def test_other_malformed_files_are_refused(tmp_path, ct2):
    data = (_bundled() / "model.bin").read_bytes()
    (tmp_path / "long.bin").write_bytes(data + b"\0")
    with pytest.raises(ModelFileError, match="1 unexpected trailing bytes"):
        read_ctranslate2(tmp_path / "long.bin")
    (tmp_path / "version.bin").write_bytes((99).to_bytes(4, "little") + data[4:64])
    with pytest.raises(ModelFileError, match="binary version 99"):
        read_ctranslate2(tmp_path / "version.bin")
    with pytest.raises(ModelFileError, match="cannot read"):
        read_ctranslate2(tmp_path / "missing.bin")
    with pytest.raises(ModelFileError, match="WhisperSpec"):
        convert_state_dict(CTranslate2Model("TransformerSpec", 1, ct2.variables, ct2.aliases))
    lacking = {k: v for k, v in ct2.variables.items() if k != "encoder/conv2/bias"}
    with pytest.raises(ModelFileError, match="lacks encoder/conv2/bias"):
        convert_state_dict(CTranslate2Model("WhisperSpec", 3, lacking, ct2.aliases))
    with pytest.raises(ModelFileError, match="not bundled"):
        ensure_converted("base.en")


# --------------------------------------------------------------------------- log-mel front end
def test_log_mel_matches_whisper_feature_extractor_and_is_differentiable():
    extractor = transformers.WhisperFeatureExtractor(feature_size=80)
    filters = torch.from_numpy(np.asarray(extractor.mel_filters, dtype=np.float32))
    t = np.arange(int(1.5 * RATE)) / RATE
    tonal = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1230 * t)).astype(np.float32)
    signals = [tonal + 0.02 * noise(len(t), 2), 0.5 * noise(RATE, 3)]
    expected = extractor(signals, sampling_rate=RATE, return_tensors="np").input_features
    assert expected.shape == (2, 80, 3000)
    batch = AudioBatch.from_waveforms(signals, RATE)
    waveforms = batch.waveforms.clone().requires_grad_(True)
    ours = log_mel(waveforms, filters, 480000)
    assert ours.shape == (2, 80, 3000)
    assert np.abs(ours.detach().numpy() - expected).max() <= 1e-4
    ours[0].sum().backward()
    grad = waveforms.grad
    assert torch.isfinite(grad).all()
    assert grad[0].abs().sum() > 0 and grad[1].abs().sum() == 0  # utterances are normalised independently
    # without n_samples: the waveform's own length, n // 160 frames
    assert log_mel(batch.waveforms[:1, :RATE], filters).shape == (1, 80, 100)


# --------------------------------------------------------------------------- tiny random Whisper
TINY_CONFIG = dict(vocab_size=51864, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                   decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_source_positions=1500,
                   max_target_positions=448, decoder_start_token_id=50257, pad_token_id=50256, bos_token_id=50256,
                   eos_token_id=50256, begin_suppress_tokens=[220, 50256])


@pytest.fixture(scope="module")
def tokenizer():
    return tokenizers.Tokenizer.from_file(str(_bundled() / "tokenizer.json"))


@pytest.fixture(scope="module")
def make(tokenizer):
    """A recogniser around a fresh tiny random Whisper (seed 0: every call has the same weights)."""
    def build(**kwargs):
        torch.manual_seed(0)
        model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**TINY_CONFIG))
        kwargs.setdefault("window", "own")
        return WhisperRecognizer(model, tokenizer, **kwargs)
    return build


@pytest.fixture(scope="module")
def rec(make):
    return make()


def test_tiny_whisper_has_every_capability(rec):
    assert missing_capabilities(rec, "transcribe", "loss", "posteriors", "stochastic") == []
    assert rec.sample_rate == RATE
    assert len(rec.vocabulary) == 51864 and rec.vocabulary[rec.eot] == "<|endoftext|>"
    assert rec.fingerprint() is None  # not loaded from a weights file
    assert rec.normalize_text("Hello, World!") == "hello world"
    assert rec.realization_scheme() == "whisper-dropout-decoder-medoid-top64-v2"


@pytest.mark.parametrize("window", ["own", "30s"])
def test_transcribe_is_deterministic_and_decode_of_log_probs_gives_it_back(make, window):
    rec = make(window=window)
    batch = AudioBatch.from_waveforms([SHORT, LONG], RATE)
    transcripts = rec.transcribe(batch)
    assert len(transcripts) == 2 and all(isinstance(t, str) for t in transcripts)
    assert rec.transcribe([SHORT, LONG]) == transcripts
    log_probs, lengths = rec.log_probs(batch)
    assert log_probs.shape[:2] == (2, int(lengths.max())) and log_probs.shape[2] == 51864
    # a random model babbles up to its token budget: decode must stop where transcribe stopped
    budget = rec._token_budget(int(batch.lengths.max()))
    assert all(1 <= n <= budget for n in lengths.tolist())
    assert torch.allclose(log_probs[0, : lengths[0]].exp().sum(-1), torch.ones(int(lengths[0])), atol=1e-4)
    assert rec.decode(log_probs, lengths) == transcripts
    if window == "own":  # one at a time: batching never changes an utterance's result
        assert rec.transcribe([SHORT]) == transcripts[:1]


@pytest.mark.parametrize("window", ["own", "30s"])
def test_loss_is_finite_per_utterance_and_its_gradient_reaches_the_samples(make, window):
    rec = make(window=window)
    batch = AudioBatch.from_waveforms([SHORT, LONG], RATE)
    waveforms = batch.waveforms.clone().requires_grad_(True)
    loss = rec.loss(batch.with_waveforms(waveforms), ["hello world", "open the door please"])
    assert loss.shape == (2,) and torch.isfinite(loss).all() and (loss > 0).all()
    loss.sum().backward()
    grad, n = waveforms.grad, len(SHORT)
    assert torch.isfinite(grad).all()
    assert grad[0, :n].abs().sum() > 0 and grad[1].abs().sum() > 0
    assert torch.count_nonzero(grad[0, n:]) == 0  # padding of the shorter utterance stays silent
    if window == "own":
        alone = rec.loss(AudioBatch.from_waveforms([SHORT], RATE), ["hello world"])
        assert torch.allclose(alone, loss[:1].detach(), atol=1e-5)


def test_loss_and_target_fits_refuse_bad_targets(rec):
    batch = AudioBatch.from_waveforms([SHORT], RATE)  # 0.5 s: a budget of 20 tokens
    assert rec.target_fits(batch, ["hello world"]) == [True]
    assert rec.target_fits(AudioBatch.from_waveforms([SHORT] * 3, RATE), ["", "   ", "word " * 60]) == [False] * 3
    with pytest.raises(ConfigError, match="empty target"):
        rec.loss(batch, [""])
    with pytest.raises(ConfigError, match="empty target"):
        rec.loss(batch, ["  "])
    with pytest.raises(ConfigError, match="1 targets for a batch of 2"):
        rec.loss(AudioBatch.from_waveforms([SHORT, LONG], RATE), ["hello"])


def test_seeded_realizations_reproduce_and_depend_on_the_seed(rec):
    first = rec.realizations(LONG, n=4, seed=3, p=0.2)
    again = rec.realizations(LONG, n=4, seed=3, p=0.2)
    other = rec.realizations(LONG, n=4, seed=4, p=0.2)
    assert len(first.transcripts) == 4 and first.log_probs.shape[0] == 4
    assert first.length == first.log_probs.shape[1] and first.p == 0.2 and first.seed == 3
    assert first.transcripts == again.transcripts and torch.equal(first.log_probs, again.log_probs)
    assert first.log_probs.shape != other.log_probs.shape or not torch.equal(first.log_probs, other.log_probs)
    assert not all(torch.equal(first.log_probs[0], row) for row in first.log_probs[1:])  # each pass its own masks


def test_p0_realizations_equal_the_deterministic_transcript_and_posteriors(rec):
    transcript = rec.transcribe([LONG])[0]
    plain = rec.realizations(LONG, n=3, seed=7, p=0.0)
    assert plain.transcripts == [transcript] * 3
    log_probs, lengths = rec.log_probs(AudioBatch.from_waveforms([LONG], RATE))
    # posteriors teacher-forced on the medoid (here the transcript), kept over the 64 likeliest tokens + the rest
    assert plain.log_probs.shape == (3, int(lengths[0]), 65)
    assert torch.allclose(plain.log_probs, top_classes(log_probs.expand(3, -1, -1), 64), atol=1e-4)


def test_stochastic_leaves_weights_alone_and_ends_cleanly(rec):
    before = {k: v.clone() for k, v in rec.model.state_dict().items()}
    batch = AudioBatch.from_waveforms([LONG], RATE)
    clean, _ = rec.log_probs(batch)
    with rec.stochastic(0.3, seed=1) as noisy:
        assert noisy is rec
        dropped, _ = rec.log_probs(batch)
    rec.realizations(LONG, n=2, seed=0, p=0.3)
    assert dropped.shape != clean.shape or not torch.equal(dropped, clean)
    assert torch.equal(rec.log_probs(batch)[0], clean)
    after = rec.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ConfigError, match="dropout rate"):
        with rec.stochastic(1.0, seed=0):
            pass
    with pytest.raises(ConfigError, match="integer seed"):  # no fallback to torch's global RNG
        with rec.stochastic(0.3, seed=None):
            pass
    with pytest.raises(ConfigError, match="n must be"):
        rec.realizations(LONG, n=0)


def test_a_pickled_copy_gives_the_same_realizations(rec):
    """Ray ships recognisers to its workers by pickling them: the dropout hooks must travel too."""
    import pickle

    copy = pickle.loads(pickle.dumps(rec))
    ours, theirs = rec.realizations(LONG, n=3, seed=5, p=0.2), copy.realizations(LONG, n=3, seed=5, p=0.2)
    assert ours.transcripts == theirs.transcripts and torch.equal(ours.log_probs, theirs.log_probs)
    assert not torch.equal(ours.log_probs[0], ours.log_probs[1])  # the copy's hooks really apply dropout


@pytest.mark.parametrize("sites", ["encoder", "both"])
def test_encoder_and_both_dropout_sites_reproduce(make, sites):
    rec = make(dropout_sites=sites)
    assert rec.realization_scheme() == f"whisper-dropout-{sites}-medoid-top64-v2"
    first = rec.realizations(SHORT, n=4, seed=3, p=0.2)
    again = rec.realizations(SHORT, n=4, seed=3, p=0.2)
    other = rec.realizations(SHORT, n=4, seed=4, p=0.2)
    assert first.transcripts == again.transcripts and torch.equal(first.log_probs, again.log_probs)
    assert first.log_probs.shape != other.log_probs.shape or not torch.equal(first.log_probs, other.log_probs)
    assert rec.realizations(SHORT, n=2, seed=3, p=0.0).transcripts == rec.transcribe([SHORT]) * 2


def test_constructor_refuses_bad_window_and_sites(make):
    with pytest.raises(ConfigError, match="window"):
        make(window="10s")
    with pytest.raises(ConfigError, match="dropout_sites"):
        make(dropout_sites="attention")


@pytest.mark.parametrize("window", ["own", "30s"])
def test_wrong_rate_and_over_30s_audio_are_refused(make, window):
    rec = make(window=window)
    at_8k = AudioBatch.from_waveforms([SHORT], 8000)
    for call in (rec.transcribe, rec.log_probs, lambda b: rec.loss(b, ["hello"])):
        with pytest.raises(InvalidAudioError, match="8000 Hz"):
            call(at_8k)
    too_long = noise(30 * RATE + 1600, 4)
    with pytest.raises(InvalidAudioError, match="30 s"):
        rec.transcribe([too_long])
    with pytest.raises(InvalidAudioError, match="30 s"):
        rec.realizations(too_long, n=2)


# --------------------------------------------------------------------------- registry
def test_parse_spec_whisper_cases():
    assert parse_spec("whisper:tiny.en") == ("whisper", "tiny.en", {})
    assert parse_spec("whisper") == ("whisper", "", {})
    assert parse_spec("whisper:tiny.en?window=own&dropout_sites=both&default_p=0.05") == (
        "whisper", "tiny.en", {"window": "own", "dropout_sites": "both", "default_p": 0.05})
    assert parse_spec("whisper:/models/whisper-base?window=30s") == ("whisper", "/models/whisper-base",
                                                                     {"window": "30s"})
    assert parse_spec(None) == ("ctc", "", {})
    with pytest.raises(ConfigError, match="not key=value"):
        parse_spec("whisper:tiny.en?window")
    with pytest.raises(ConfigError, match="unknown recogniser kind"):
        parse_spec("wisper:tiny.en")


def test_load_recognizer_refuses_a_missing_or_incomplete_folder(tmp_path):
    # an absolute path never reaches the network: the hub refuses it as a repo id at once
    with pytest.raises(ModelFileError, match="not a local folder, nor a"):
        load_recognizer(f"whisper:{tmp_path / 'no-such-model'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="a local folder without a loadable Hugging Face Whisper model"):
        load_recognizer(f"whisper:{tmp_path / 'empty'}")


# --------------------------------------------------------------------------- real tiny.en (slow)
CLIPS = ["librispeech_test_other/1688-142285-0008", "librispeech_test_other/3005-163389-0002"]  # 4.1 s, 3.6 s


@pytest.fixture(scope="module")
def speech():
    from asrguard.asr.recipes import default_data_root

    root = default_data_root() / "english_speech"
    if not (root / "manifest.jsonl").is_file():
        pytest.skip(f"real English speech not found at {root} (a fresh clone has no ../shared/data)")
    from asrguard.audio import load_audio

    rows = {}
    with open(root / "manifest.jsonl") as handle:
        for line in handle:
            row = json.loads(line)
            if row["id"] in CLIPS:
                rows[row["id"]] = row
    assert sorted(rows) == sorted(CLIPS)
    return [(load_audio(root / rows[i]["path"])[0], rows[i]["transcript"]) for i in CLIPS]


@pytest.fixture(scope="module")
def tiny_en(speech, converted):
    rec = WhisperRecognizer.load("tiny.en")  # from the module's converted cache folder
    assert rec.window == "30s" and rec.name == "whisper:whisper-tiny.en"
    return rec


@pytest.mark.slow
def test_real_tiny_en_transcribes_english_speech(tiny_en, speech):
    import jiwer

    from asrguard.text import normalize_english

    folder = ensure_converted()
    assert folder.parent == Path(os.environ["ASRGUARD_CACHE"])  # the module's tmp cache, not the user's
    assert tiny_en.weights_sha256 == verify(folder) and len(tiny_en.fingerprint()) == 64
    for (waveform, reference), hypothesis in zip(speech, tiny_en.transcribe([w for w, _ in speech])):
        assert jiwer.wer(normalize_english(reference), normalize_english(hypothesis)) <= 0.15, hypothesis


@pytest.mark.slow
def test_real_tiny_en_seeded_realizations_reproduce(tiny_en, speech):
    waveform = speech[0][0]
    first = tiny_en.realizations(waveform, n=8, seed=0, p=0.1)
    again = tiny_en.realizations(waveform, n=8, seed=0, p=0.1)
    assert first.transcripts == again.transcripts and torch.equal(first.log_probs, again.log_probs)
    assert first.log_probs.shape[0] == 8 and torch.isfinite(first.log_probs).all()


# --------------------------------------------------------------------------- attacks through the interface
@pytest.mark.parametrize("attack", ["cw", "dr", "nrr", "ia", "us", "known-mask"])
def test_every_waveform_attack_runs_against_whisper_through_the_interface(make, attack):
    from asrguard.attacks.factory import make_attack

    rec = make()
    x = noise(RATE, 7)
    settings = {"max_iter": "2", "check_every": "1"}
    if attack == "ia":
        settings["stage2_iter"] = "2"
    if attack == "known-mask":
        settings.update(n_realizations="2", masks_per_step="1")
    result = make_attack(attack, rec, settings).generate([x], ["open the door"])[0]
    assert result.waveform.shape == x.shape and np.isfinite(result.waveform).all()
    assert not np.array_equal(result.waveform, x)
    assert isinstance(result.transcript, str) and result.iterations >= 1


def test_the_universal_perturbation_fits_and_applies_to_whisper(make):
    from asrguard.attacks.factory import make_attack

    rec = make()
    attack = make_attack("universal", rec, {"epochs": "1"})
    attack.fit([noise(RATE, 1), noise(RATE, 2)])
    result = attack.generate([noise(RATE, 3)])[0]
    assert np.isfinite(result.waveform).all() and not np.array_equal(result.waveform, noise(RATE, 3))


def test_pgd_toward_alignment_targets_is_refused_for_whisper_with_a_clear_error(rec):
    from asrguard.attacks.pgd import PGDAttack, PGDConfig
    from asrguard.errors import MissingCapabilityError

    with pytest.raises(MissingCapabilityError, match=r"PGD toward forced-alignment targets.*align \(Aligner\)"):
        PGDAttack(rec, PGDConfig(eps=0.01, step_size=0.001, iterations=1))


@pytest.mark.slow
def test_cw_reaches_a_short_target_on_real_speech_within_its_budget(tiny_en, speech):
    from asrguard.attacks.cw import CWAttack, CWConfig
    from asrguard.text import normalize_english

    waveform = speech[1][0]
    config = CWConfig(tau_db=25, max_iter=40, check_every=5, max_shrinks=1)
    result = CWAttack(tiny_en, config).generate([waveform], ["open the door"])[0]
    assert result.success, result.transcript
    assert normalize_english(result.transcript) == "open the door"
    assert result.db_x_delta <= -25.0 + 1e-3


def test_a_hugging_face_whisper_folder_loads_through_the_registry(make, tmp_path):
    # the hub-loading path users take (from_pretrained), on a tiny model saved locally
    rec = make()
    rec.model.save_pretrained(tmp_path / "tiny", safe_serialization=True)
    transformers.WhisperTokenizerFast(tokenizer_file=str(_bundled() / "tokenizer.json")).save_pretrained(tmp_path / "tiny")
    loaded = load_recognizer(f"whisper:{tmp_path / 'tiny'}?window=own")
    assert loaded.window == "own" and missing_capabilities(loaded, "transcribe", "loss", "posteriors", "stochastic") == []
    x = noise(RATE // 2, 5)
    assert loaded.transcribe([x]) == rec.transcribe([x])
    hub_style = WhisperRecognizer.from_pretrained(str(tmp_path / "tiny"), local_files_only=True, window="own")
    assert hub_style.transcribe([x]) == rec.transcribe([x])


def test_uncertainty_features_work_on_whisper_with_aligned_compact_posteriors(make):
    from asrguard.uncertainty.features import FeatureExtractor

    rec = make()
    drawn = rec.realizations(LONG, n=4, seed=1, p=0.2)
    assert drawn.log_probs.shape[0] == 4 and drawn.log_probs.shape[2] == 65 and drawn.length == drawn.log_probs.shape[1]
    assert torch.allclose(drawn.log_probs.exp().sum(-1), torch.ones(4, drawn.length), atol=1e-4)
    features = FeatureExtractor(n=4, p=0.2, seed=1)(rec, LONG)
    assert all(np.isfinite(v) for v in features.measures.values()) and features.char_hist.sum() == 4
    assert all(t == rec.normalize_text(t) for t in features.transcripts)  # P^char compares normalised text
