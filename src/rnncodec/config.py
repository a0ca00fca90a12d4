"""Model configuration: everything needed to rebuild a model, stored beside its weights: the
image model's (ModelConfig) and the context models' architecture (ContextConfig)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

from .errors import OptionError

STRIDE = 16  # total encoder stride: one bit vector per 16×16 block
CELLS = ("lstm", "assoc_lstm", "gru", "residual_gru")
LATER_FIELDS = {"priming": 0, "tail_width": 0.0}  # ModelConfig fields added after the first release, with their defaults
FRAMEWORKS = ("oneshot", "additive", "residual_scaling", "iteration_gain")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of an RNN codec (Toderici et al. 2017, Figure 1); `width` scales every layer's depth."""

    encoder_cell: str = "residual_gru"
    decoder_cell: str = "residual_gru"
    framework: str = "additive"
    width: float = 1.0
    bits: int = 32  # binarizer depth: bits per 16x16 block per iteration
    iterations: int = 16  # iterations the model was trained for; also the most a file may hold
    assoc_copies: int = 4  # memory copies of the associative LSTM
    gain_width: int = 32  # channels of the residual-scaling gain network
    priming: int = 0  # extra decoder steps on the first iteration's bits (Johnston et al. 2018): no extra bits
    tail_width: float = 0.0  # width of the decoder's last conv-RNN layer, which feeds the pixels (0: `width`)

    def __post_init__(self) -> None:
        if self.encoder_cell not in CELLS or self.decoder_cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}")
        if self.framework not in FRAMEWORKS:
            raise ValueError(f"framework must be one of {FRAMEWORKS}")
        if not 0 < self.width <= 4 or not 1 <= self.bits <= 256 or not 1 <= self.iterations <= 64 or not 0 <= self.priming <= 8:
            raise ValueError("width, bits, iterations or priming out of range")
        if not 0 <= self.tail_width <= 4:
            raise ValueError("tail_width out of range")

    def depth(self, paper_depth: int, width: float = 0.0) -> int:
        """Scaled layer depth, kept a multiple of 8 so depth-to-space and complex pairs split evenly."""
        return max(8, int(round(paper_depth * (width or self.width) / 8)) * 8)

    def coded_iterations(self, iterations: int | None) -> int:
        """The iterations an encoder codes when asked for `iterations` (None: all the model has)."""
        n = self.iterations if iterations is None else iterations
        if not 1 <= n <= self.iterations:
            raise OptionError(f"iterations must be between 1 and {self.iterations} for this model")
        return n

    def to_json(self) -> str:
        """The config as stored with weights (and hashed into the model id). Fields added since
        the first release are left out at their default, so older models keep their ids."""
        fields = {k: v for k, v in asdict(self).items() if LATER_FIELDS.get(k, object()) != v}
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls(**json.loads(text))


PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(width=1.0),
    "small": ModelConfig(width=0.25, iterations=16),
    "fast": ModelConfig(width=0.125, iterations=16),
    "tiny": ModelConfig(width=1 / 32, iterations=4),  # for tests only
}


def preset(name: str, **overrides) -> ModelConfig:
    """A named preset, optionally with fields replaced (e.g. framework='oneshot')."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


@dataclass(frozen=True)
class ContextConfig:
    bits: int = 32  # bits per position per iteration: the image model's binarizer depth
    iterations: int = 16  # iterations with their own learned bias; later ones reuse the last
    masked: int = 32  # channels of the masked conv over the rows above
    rows_above: int = 3  # rows the masked conv sees
    kernel_w: int = 7  # its width
    state: int = 32  # channels of the cross-iteration conv-LSTM
    row: int = 32  # channels of the row LSTM
    head: int = 64  # channels of the 1×1 output layers

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ContextConfig:
        return cls(**json.loads(text))
