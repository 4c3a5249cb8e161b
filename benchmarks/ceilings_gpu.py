"""The two ceilings every other figure is measured against: bf16 matmul rate, copy bandwidth.

    python benchmarks/ceilings_gpu.py [--out ceilings.md]
"""
import argparse

from common import device_line, emit, md_table, measure_ceilings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    args = ap.parse_args()
    tf, gbs = measure_ceilings()
    emit("Ceilings", f"{device_line()}\n\n" + md_table([["bf16 matmul 8192^3 (random data)", f"{tf:.0f} TFLOP/s"],
                                                          ["device copy (read + write)", f"{gbs:,.0f} GB/s"]],
                                                         ["measure", "value"]), args.out)


if __name__ == "__main__":
    main()
