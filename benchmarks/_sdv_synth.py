"""Fit one SDV synthesizer on a table and sample from it; runs in SDV's own environment.

Called by benchmarks/synthetic.py (``--sdv-python``): reads the training rows from a .csv
the driver wrote, fits ``TVAESynthesizer`` or ``GaussianCopulaSynthesizer`` with its
defaults (SDV 2.x API), samples as many rows, writes them to a .csv and prints the fit time
as JSON. Usage: python _sdv_synth.py METHOD TRAIN.csv OUT.csv SEED
"""

import json
import sys
import time

import numpy as np
import pandas as pd
import torch
from sdv.metadata import Metadata
from sdv.single_table import GaussianCopulaSynthesizer, TVAESynthesizer


def main() -> None:
    method, train_csv, out_csv, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    np.random.seed(seed)
    torch.manual_seed(seed)
    train = pd.read_csv(train_csv)
    metadata = Metadata.detect_from_dataframes({"table": train}, infer_keys=None)
    cls = {"tvae": TVAESynthesizer, "gaussian_copula": GaussianCopulaSynthesizer}[method]
    start = time.perf_counter()
    synthesizer = cls(metadata)
    synthesizer.fit({"table": train})
    seconds = time.perf_counter() - start
    rows = synthesizer.sample(len(train))
    rows = rows["table"] if isinstance(rows, dict) else rows
    rows.to_csv(out_csv, index=False)
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main()
