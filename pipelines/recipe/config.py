"""The recipe schema: the layers' configs composed into one frozen, typed, strict `Recipe`.

A recipe has four sections, `data`, `features`, `model`, `train`, and an optional fifth, `tune`
(the search space of `attn tune`, defined in recipe/space.py). Unknown keys are errors (the
loader names the nearest valid key). Each layer owns its part and its defaults: `features` is
defined in features/config.py, the `model` section holds `name` plus that family's
hyperparameters (its nested `Config`, see `attn.models.registry`); `data` and `train` are
defined here.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from attn.features.config import AUDIO_EXTENSIONS, AudioFeatures, AugmentConfig, TextFeatures
from attn.models import registry
from attn.schema import (
    Auto,
    Fraction,
    NestedError,
    NonNegFloat,
    NonNegInt,
    PosFloat,
    PosInt,
    Strict,
    describe_validation_error,
)

from .space import TuneSpace, check_space

SYNTH_CLASSES = ("sine", "square", "sawtooth", "noise_burst", "chirp", "am_tone")
SYNTH_LOWEST_PITCH = 110.0  # Hz; data/synthetic.py draws pitches from here up to sample_rate / 8
SYNTH_MIN_RATE = int(8 * SYNTH_LOWEST_PITCH)  # the lowest sample rate that leaves that range non-empty

# Recipe keys that hold file system paths: relative values resolve against the recipe's folder
# (or the working directory, for --set overrides).
PATH_KEYS = (
    ("data", "root"),
    ("data", "manifest"),
    ("data", "train"),
    ("data", "val"),
    ("data", "test"),
    ("data", "cache_dir"),
    ("data", "events", "annotations"),
    ("data", "events", "files"),
    ("features", "tokenizer", "vectors"),
    ("train", "augment", "background"),
)


class SyntheticConfig(Strict):
    """Built-in generated dataset: needs no files, deterministic from `seed`."""

    classes: tuple[Literal[SYNTH_CLASSES], ...] = SYNTH_CLASSES  # type: ignore[valid-type]
    per_class: PosInt = 200
    seconds: PosFloat = 1.0  # generated at features.sample_rate
    seed: NonNegInt = 0  # numpy's generators take no negative seed


class EventsData(Strict):
    """Annotated recordings the events post-processing is tuned on after training (`attn train`
    stores the settings in the model): an annotations CSV (file,onset,offset,label[,split]), an
    optional files CSV (path[,split]: also the recordings with no events), and the split to use
    (rows without a split column are all used)."""

    annotations: str
    files: str | None = None
    split: str | None = "val"
    hop_seconds: PosFloat = 0.1


class DataConfig(Strict):
    """Where examples come from and how they split into train/val/test.

    Exactly one source: `synthetic`; `root` alone (folder per class, `root/<label>/*.wav`);
    `manifest` (CSV/TSV/JSONL with an optional split column, paths relative to `root` or to the
    manifest's folder); or `train` (+ optional `val`, `test`) manifests, one per split.
    """

    # A folder or column named by a number (`--set data.root=2024`: YAML reads an int) is its name.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    synthetic: SyntheticConfig | None = None
    root: str | None = None
    manifest: str | None = None
    train: str | None = None
    val: str | None = None
    test: str | None = None
    path_column: str = "path"
    text_column: str = "text"
    label_column: str = "label"
    # Multi-label tagging: the label column holds several labels joined by `label_sep` (a JSON
    # list in JSONL also works); auto: the first of ; | , that occurs in the column (multilabel.py).
    multi_label: bool = False
    label_sep: str = "auto"
    split_column: str = "split"
    fold_column: str | None = None  # cross-validation folds given by the data (e.g. ESC-50's fold 1-5)
    val_fraction: Fraction = 0.1
    test_fraction: Fraction = 0.1
    split_seed: NonNegInt = 0
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS
    events: EventsData | None = None  # tune `attn predict --events` on these (see EventsData)
    cache_dir: str | None = None  # keep decoded, resampled audio here for the next run (see data/audio_cache.py)

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        sources = [
            name
            for name, on in (
                ("synthetic", self.synthetic is not None),
                ("manifest", self.manifest is not None),
                ("train", self.train is not None),
            )
            if on
        ]
        if self.synthetic is not None and self.root is not None:
            sources.append("root")  # root is also the base of manifest paths, but synthetic has none
        if len(sources) > 1:
            raise ValueError(f"give one data source, not {' and '.join(sources)} (set the others to null, "
                             f"e.g. --set data.{sources[-1]}=null)")  # fmt: skip
        if not sources and self.root is None:
            raise ValueError("no data source: set one of root, manifest, train or synthetic")
        if (self.val or self.test) and not self.train:
            raise ValueError("val/test manifests need a train manifest")
        if not self.label_sep or self.label_sep.isspace() and self.label_sep != "\t":
            raise ValueError(
                "label_sep must be a non-blank separator (or auto); YAML reads a bare | or > as "
                "a block marker: quote it, e.g. --set \"data.label_sep='|'\""
            )
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1")
        return self

    @property
    def source(self) -> str:
        if self.synthetic is not None:
            return "synthetic"
        if self.manifest is not None:
            return "manifest"
        if self.train is not None:
            return "splits"
        return "folder"


def _features_tag(v: Any) -> str:
    kind = v.get("kind") if isinstance(v, dict) else getattr(v, "kind", None)
    return "text" if kind == "text" else "audio"


Features = Annotated[
    Annotated[AudioFeatures, Tag("audio")] | Annotated[TextFeatures, Tag("text")],
    Discriminator(_features_tag),
]


class ModelSection(Strict):
    """`name` picks a registered family; `config` holds that family's hyperparameters, its nested
    `Config`, validated once here (unknown keys are errors before any data loads). A recipe
    writes the section flat, `{name: cnn, channels: [...], ...}`, and it is saved the same way.
    """

    name: str = "cnn"
    config: Strict  # an instance of registry.get(name).Config

    @model_validator(mode="before")
    @classmethod
    def _family_config(cls, data: Any) -> Any:
        if not isinstance(data, dict) or isinstance(data.get("config"), BaseModel):
            return data
        name = data.get("name", "cnn")
        if not isinstance(name, str) or name not in registry.names():
            raise NestedError(key="name", message=registry.unknown_name(name))
        try:
            config = registry.config(name, {k: v for k, v in data.items() if k != "name"})
        except ValidationError as e:
            raise NestedError(e, registry.get(name).Config) from None
        return {"name": name, "config": config}

    @model_serializer(mode="plain")
    def _flat(self, info: SerializationInfo) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump(mode=info.mode)}

    @property
    def family(self) -> type:
        """The registered `Backbone` subclass."""
        return registry.get(self.name)

    @property
    def params(self) -> dict[str, Any]:
        """The hyperparameters as plain data, every default filled in."""
        return self.config.model_dump(mode="json")


class AbstainConfig(Strict):
    """train.abstain: the score below which `attn predict` answers `unknown` (single-label)."""

    # Choose the lowest score S whose validation answers (clips scoring >= S) are at least this
    # precise, and store it in the model (predict's default --min-score). null = never abstain.
    target_precision: Annotated[float, Field(gt=0, le=1)] | None = None
    # Also answer `unknown` for inputs unlike every training clip (pipelines/infer/novelty.py): the
    # similarity of an input's embedding to its k-th nearest training clip must reach the level
    # that keeps this share of in-domain held-out clips (validation; after a refit, the training
    # clips leave-one-out). null = no novelty check.
    novelty: Annotated[float, Field(gt=0, lt=1)] | None = None
    neighbors: Annotated[int, Field(ge=1)] = 1  # k: the k-th nearest training clip


class TrainConfig(Strict):
    """Optimisation: AdamW, linear warmup then cosine (or constant) decay, early stopping."""

    epochs: PosInt | Auto = 30  # auto: from the training set's size (pipelines/data/auto.py)
    batch_size: PosInt = 32
    lr: PosFloat = 1e-3
    weight_decay: NonNegFloat = 0.01
    warmup: Fraction = 0.05  # fraction of all steps
    schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: NonNegFloat = 1.0  # max global grad norm; 0 = off
    label_smoothing: Fraction = 0.0
    patience: NonNegInt | Auto = 10  # epochs without improvement before stopping; 0 = never; auto: epochs // 3
    # The validation score that picks the saved epoch (and stops early). Ties on accuracy or F1 go
    # to the lower validation loss, then to the earlier epoch. auto: val_loss when the validation
    # split is small (below SMALL_VAL examples, data/auto.py, where accuracy moves in coarse
    # steps), else val_accuracy; val_macro_f1 when the training classes are imbalanced.
    monitor: Literal["val_accuracy", "val_loss", "val_macro_f1", "auto"] = "val_accuracy"
    # balanced: loss weight N / (K n_k) per class (the baseline's too); auto: balanced when the
    # training classes are imbalanced (the largest IMBALANCE times the smallest, data/auto.py)
    class_weights: Literal["none", "balanced", "auto"] = "none"
    baseline: bool = True  # also fit a TF-IDF / MFCC + logistic-regression baseline on the same splits
    blend: bool = True  # save the model blended with the baseline, weight chosen on validation (0 = network alone)
    seed: NonNegInt = 0
    ensemble: PosInt = 1  # train this many models (seeds seed, seed+1, ...) and average their probabilities
    # Per clip and epoch: one random window, or all of them; auto: all when the training clips
    # hold two windows or more on average (long recordings), else random.
    windows: Literal["random", "all", "auto"] = "random"
    # After early stopping chose the epoch count on validation, train again on train + val for
    # that many epochs (the baseline too, with the C validation chose) and save that model.
    # auto: when validation holds at least REFIT_SHARE of the labelled examples, or the
    # training set is small (below REFIT_SMALL examples).
    refit: bool | Literal["auto"] = False
    # Cross-validation over the labelled non-test examples: K stratified folds (or the folds of
    # data.fold_column), one model per fold scored on its held-out fold, then the saved model
    # (folds_final). 0 = off.
    folds: Annotated[int, Field(ge=0, le=100)] = 0
    # The model cross-validation saves: `refit`, one model trained on all folds for the folds'
    # median best epoch; `ensemble`, the K fold models averaged (K times the cost to predict).
    # Either way T and min_score are fitted on the out-of-fold scores.
    folds_final: Literal["refit", "ensemble"] = "refit"

    @field_validator("folds")
    @classmethod
    def _folds(cls, v: int) -> int:
        if v == 1:
            raise ValueError("1 fold is no cross-validation: use 0 (off) or 2 or more")
        return v

    length_buckets: bool = False  # batch examples of similar length together (text: less padding, faster)
    augment: AugmentConfig = AugmentConfig()
    frontend_lr_scale: PosFloat = 1.0  # learning rate multiplier for the front-end (text embedding, encoder)
    # A pretrained encoder's layer i of L learns at frontend_lr_scale * layer_decay ** (L + 1 - i)
    # times lr (embeddings: i = 0); 1.0 = one rate for all.
    layer_decay: Annotated[float, Field(gt=0, le=1)] = 1.0
    ema: Fraction = 0.0  # evaluate and keep an exponential moving average of the weights; 0 = off
    pretrain_epochs: NonNegInt = 0  # text: masked-token pretraining on the training texts first
    mask_prob: Annotated[float, Field(gt=0, lt=1)] = 0.15  # share of tokens masked when pretraining
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    compile: bool = False  # torch.compile the training forward pass (pays off on GPU; not on 2 CPU cores)
    tensorboard: bool = False  # TensorBoard event files in <run>/tensorboard (needs attn[tensorboard])
    # Temperature scaling fitted on validation after the blend (kept only when it lowers the
    # validation ECE); with refit, on the first phase's validation scores (pipelines/calibration.py).
    calibrate: bool = True
    abstain: AbstainConfig = AbstainConfig()


class Recipe(Strict):
    """A whole experiment. Build one with `attn.pipelines.recipe.load.load_recipe`."""

    data: DataConfig
    features: Features = AudioFeatures()
    model: ModelSection = Field(default_factory=lambda: ModelSection.model_validate({}))
    train: TrainConfig = TrainConfig()
    tune: TuneSpace | None = None  # attn tune's search space; training ignores it

    @field_validator("tune", mode="after")
    @classmethod
    def _tunable(cls, v: TuneSpace | None, info: ValidationInfo) -> TuneSpace | None:
        # Each key must exist in this recipe and accept each bound or choice (checked against the
        # other sections, so only when they validated).
        sections = ("data", "features", "model", "train")
        if v is not None and all(s in info.data for s in sections):
            plain = {s: info.data[s].model_dump(mode="json") for s in sections}
            # with the context's rules for a recipe about to be used (a mask wider than the bins)
            check_space(v, plain, lambda raw: _problem(raw, info.context))
        return v

    @model_serializer(mode="wrap")
    def _without_empty_tune(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out = handler(self)
        if out.get("tune", 0) is None:
            del out["tune"]
        return out

    @field_validator("features", mode="before")
    @classmethod
    def _known_kind(cls, v: Any) -> Any:
        kinds = (*typing.get_args(AudioFeatures.model_fields["kind"].annotation), "text")
        kind = v.get("kind") if isinstance(v, dict) else None
        if kind is not None and kind not in kinds:
            raise ValueError(f"kind must be one of {', '.join(kinds)} (got {kind!r})")
        return v

    @model_validator(mode="before")
    @classmethod
    def _synthetic_rate(cls, raw: Any) -> Any:
        """Checked before the sections, whose own rules (e.g. mel filters) a rate of 1 Hz also breaks."""
        data, features = (raw.get(k) if isinstance(raw, dict) else None for k in ("data", "features"))
        synthetic = isinstance(data, dict) and data.get("synthetic") is not None
        rate = features.get("sample_rate") if isinstance(features, dict) and features.get("kind") != "text" else None
        if synthetic and isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 < rate < SYNTH_MIN_RATE:
            raise ValueError(
                f"features.sample_rate ({rate}) is too low for data.synthetic: its signals need at least "
                f"{SYNTH_MIN_RATE} Hz (the lowest pitch, {SYNTH_LOWEST_PITCH:g} Hz, at 8 samples per period)"
            )
        return raw

    @model_validator(mode="after")
    def _abstain_is_single_label(self, info: ValidationInfo) -> Recipe:
        """Abstention picks a min score for one label's probability; a multi-label model decides
        each class by its threshold (a target precision there was silently unused)."""
        a = self.train.abstain
        if (info.context or {}).get("new_recipe") and self.data.multi_label and (a.target_precision or a.novelty):
            key = "target_precision" if a.target_precision else "novelty"
            raise ValueError(f"train.abstain.{key} is for single-label models; a multi-label model answers each class "
                             "by its threshold (chosen on validation; predict --threshold overrides)")  # fmt: skip
        return self

    @model_validator(mode="after")
    def _masks_fit(self, info: ValidationInfo) -> Recipe:
        """A frequency mask wider than the features' bins masks all of them on every example
        (new recipes only, as the other rules for recipes about to be used)."""
        f, width = self.features, self.train.augment.freq_mask
        if not (info.context or {}).get("new_recipe") or not width or not isinstance(f, AudioFeatures):
            return self
        key = {"logmel": "n_mels", "mfcc": "n_mfcc", "spectrogram": "n_fft"}.get(f.kind)  # what sets the bins
        if key is None or (key == "n_fft" and not isinstance(f.n_fft, int)):  # waveform; n_fft in ms: once resolved
            return self
        if width > f.bins:
            raise ValueError(f"train.augment.freq_mask ({width}) is wider than the features' {f.bins} frequency bins "
                             f"(features.{key}); use at most {f.bins}")  # fmt: skip
        return self

    @property
    def modality(self) -> str:
        return "text" if isinstance(self.features, TextFeatures) else "audio"


def _problem(raw: dict[str, Any], context: dict[str, Any] | None = None) -> str | None:
    """What is wrong with a raw recipe (`dotted.key: problem`), or None."""
    try:
        Recipe.model_validate(raw, context=context)
    except ValidationError as e:
        return describe_validation_error(e, Recipe)
    return None
