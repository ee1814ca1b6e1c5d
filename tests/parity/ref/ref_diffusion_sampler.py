"""Reference side: upstream's spaced DDPM and DDIM loops on a toy denoiser with given noise."""

import torch
from _common import read_args, read_inputs, write_outputs
from tortoise.utils.diffusion import SpacedDiffusion, get_named_beta_schedule, space_timesteps

args = read_args()
inputs = read_inputs()
weights, bias = inputs["weights"], inputs["bias"]


class ToyDenoiser(torch.nn.Module):
    """Same function as tests/parity/test_diffusion_sampler.py's toy_denoiser."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # upstream reads the device off a parameter

    def forward(self, x, timesteps, conditioning_free=False):
        channels = x.shape[1]
        mixed = torch.einsum("oc,bct->bot", weights, x) + bias[None, :, None]
        mixed = mixed + timesteps.float()[:, None, None] / 4000
        out = torch.tanh(mixed)
        if conditioning_free:
            out = torch.cat([0.5 * out[:, :channels] - 0.1, out[:, channels:]], dim=1)
        return out


step_noises = list(inputs["step_noises"])  # drawn in the order the loop asks for them


def replay_noise(like):
    return step_noises.pop(0).to(like.dtype).reshape(like.shape)


torch.randn_like = replay_noise
outputs = {}
for name, cond_free in (("plain", False), ("guided", True)):
    diffuser = SpacedDiffusion(
        use_timesteps=space_timesteps(4000, [args["steps"]]), model_mean_type="epsilon",
        model_var_type="learned_range", loss_type="mse", betas=get_named_beta_schedule("linear", 4000),
        conditioning_free=cond_free, conditioning_free_k=args["cond_free_k"])
    step_noises[:] = list(inputs["step_noises"])
    outputs[f"ddpm_{name}"] = diffuser.p_sample_loop(ToyDenoiser(), tuple(inputs["start"].shape),
                                                      noise=inputs["start"].clone())
    step_noises[:] = list(inputs["step_noises"])
    outputs[f"ddim_{name}"] = diffuser.ddim_sample_loop(ToyDenoiser(), tuple(inputs["start"].shape),
                                                        noise=inputs["start"].clone(), eta=0.0)
outputs["timesteps"] = torch.tensor(sorted(diffuser.timestep_map))
write_outputs(outputs)
