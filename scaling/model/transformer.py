"""The decoder-only transformer, top to bottom: embed, blocks, norm, logits, loss."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from scaling.config import ModelConfig
from scaling.fileio import atomic_folder
from scaling.model.attention import Attention
from scaling.model.layers import MLP, make_norm, rope_cos_sin, sinusoidal_positions
from scaling.model.moe import MoE, RoutingStats
from scaling.model.parametrization import init_std, multipliers


@dataclass
class ModelOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None  # ce_loss + aux_loss_coef·aux_loss + z_loss_coef·z_loss
    ce_loss: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None  # mean over MoE layers; None for a dense model
    z_loss: torch.Tensor | None = None
    expert_load: torch.Tensor | None = None  # (n_moe_layers, n_experts) token fractions

    def logged(self) -> dict[str, torch.Tensor]:
        """What a training step averages over its micro-batches and logs beside the loss
        (``Transformer.describe_step`` turns the averages into numbers)."""
        if self.aux_loss is None:
            return {}
        return {"aux_loss": self.aux_loss, "z_loss": self.z_loss, "expert_load": self.expert_load}


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + ffn(norm(x))."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.residual = multipliers(cfg).residual  # CompleteP: L0/L on each branch
        self.attn_norm = make_norm(cfg, cfg.d_model)
        self.attn = Attention(cfg)
        self.ffn_norm = make_norm(cfg, cfg.d_model)
        self.ffn = MoE(cfg) if cfg.is_moe_layer(layer) else MLP(cfg, cfg.ff_dim)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, RoutingStats | None]:
        x = x + self._scaled(self.attn(self.attn_norm(x), rope))
        if isinstance(self.ffn, MoE):
            y, stats = self.ffn(self.ffn_norm(x))
            return x + self._scaled(y), stats
        return x + self._scaled(self.ffn(self.ffn_norm(x))), None

    def _scaled(self, branch: torch.Tensor) -> torch.Tensor:
        """CompleteP's L0/L on a residual branch; 1 under the other parametrizations, left
        out so that they compute exactly what they did."""
        return branch if self.residual == 1.0 else branch * self.residual


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.mult = multipliers(cfg)
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = (
            nn.Embedding(cfg.max_seq_len, cfg.d_model) if cfg.position == "learned" else None
        )
        self.emb_dropout = nn.Dropout(cfg.embed_dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = make_norm(cfg, cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Normal weights, zero biases, unit norms; each weight's std from the
        parametrization (``parametrization.init_std``): init_std, with the output projections
        of each residual branch at std / sqrt(2·n_layers) (GPT-2), so the residual stream's
        variance does not grow with depth, and under µP the hidden matrices at std / sqrt(m)."""
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                std = init_std(self.cfg, f"{name}.weight")
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm | nn.RMSNorm):
                nn.init.ones_(module.weight)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, MoE):
                module.reset_parameters(
                    *(init_std(self.cfg, f"{name}.{p}") for p in ("router.weight", "w_in", "w_out"))
                )

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> ModelOutput:
        """``idx`` and ``targets``: (batch, seq) token ids; targets of -1 are ignored."""
        cfg = self.cfg
        T = idx.shape[1]
        if T > cfg.max_seq_len:
            raise ValueError(f"sequence length {T} exceeds max_seq_len ({cfg.max_seq_len})")
        x = self.tok_emb(idx)
        if cfg.position == "learned":
            x = x + self.pos_emb(torch.arange(T, device=idx.device))
        elif cfg.position == "sinusoidal":
            x = x + sinusoidal_positions(T, cfg.d_model, idx.device).to(x.dtype)
        rope = (
            rope_cos_sin(T, cfg.head_dim, cfg.rope_theta, idx.device)
            if cfg.position == "rope"
            else None
        )
        x = self.emb_dropout(x * self.mult.input if self.mult.input != 1.0 else x)

        routing = []
        for block in self.blocks:
            x, stats = block(x, rope)
            if stats is not None:
                routing.append(stats)
        logits = self.lm_head(self.norm(x))
        if self.mult.output != 1.0:  # µP: the readout's 1/m
            logits = logits * self.mult.output

        out = ModelOutput(logits=logits)
        if routing:
            out.aux_loss = torch.stack([s.aux_loss for s in routing]).mean()
            out.z_loss = torch.stack([s.z_loss for s in routing]).mean()
            out.expert_load = torch.stack([s.load for s in routing])
        if targets is not None:
            out.ce_loss = F.cross_entropy(
                logits.float().view(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1
            )
            out.loss = out.ce_loss
            if routing:
                out.loss = (
                    out.loss + cfg.aux_loss_coef * out.aux_loss + cfg.z_loss_coef * out.z_loss
                )
        return out

    def moe_layers(self) -> list[MoE]:
        return [m for m in self.modules() if isinstance(m, MoE)]

    def update_router_biases(self) -> None:
        """After an optimizer step: aux-loss-free balancing from the load since the last call."""
        for moe in self.moe_layers():
            if moe.bias_rate:
                moe.update_bias()

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """What the model does after each optimizer step, hooked onto ``optimizer``: the
        routers' bias update (aux-loss-free balancing), so a training loop needs not know
        of experts."""
        if any(moe.bias_rate for moe in self.moe_layers()):
            optimizer.register_step_post_hook(lambda *_: self.update_router_biases())

    @staticmethod
    def describe_step(logged: dict[str, torch.Tensor]) -> dict[str, float]:
        """A step's averages of ``ModelOutput.logged`` as the numbers metrics.jsonl keeps."""
        if not logged:
            return {}
        load = logged["expert_load"]
        return {
            "aux_loss": float(logged["aux_loss"]),
            "z_loss": float(logged["z_loss"]),
            "expert_load_max_over_mean": float((load.max(-1).values / load.mean(-1)).max()),
        }


def save_pretrained(model: Transformer, directory: str | Path) -> None:
    """Weights as ``model.safetensors`` and the config as ``model_config.json``."""
    from safetensors.torch import save_model

    with atomic_folder(directory) as tmp:  # all of it or, after a failure, nothing new
        save_model(model, str(tmp / "model.safetensors"))  # handles the tied embedding
        (tmp / "model_config.json").write_text(model.cfg.model_dump_json(indent=2) + "\n")


def load_pretrained(directory: str | Path) -> Transformer:
    """The model that ``save_pretrained`` (or a finished training run) wrote."""
    from safetensors.torch import load_model

    directory = Path(directory)
    cfg = ModelConfig.model_validate_json((directory / "model_config.json").read_text())
    model = Transformer(cfg)
    load_model(model, str(directory / "model.safetensors"))
    return model
