"""torch.profiler table of one CARL forward (where the time goes), for the speed issue's note.

    python benchmarks/profile_model.py --config published --bands 13 --size 128 --batch 1 --device cpu
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile, record_function

import carl_geo


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="published")
    p.add_argument("--bands", type=int, default=13)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--rows", type=int, default=25)
    args = p.parse_args()

    model = carl_geo.CARL(carl_geo.get_config(args.config)).eval().to(args.device)
    x = torch.randn(args.batch, args.bands, args.size, args.size, device=args.device)
    wl = torch.linspace(0.4, 2.4, args.bands, device=args.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    with torch.inference_mode(), torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.bf16):
        model(x, wl)  # warm-up
        with profile(activities=activities) as prof:
            with record_function("spectral_encoder"):
                tokens = model.embed_bands(model.pad_to_patch(x))
                q = model.spectral_tf(tokens, wl.expand(args.batch, -1))["queries"]
            with record_function("full_forward"):
                model(x, wl)
    key = "cuda_time_total" if args.device == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows))
    del q


if __name__ == "__main__":
    main()
