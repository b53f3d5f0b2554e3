"""DistributedDataParallel through torchrun (gloo on CPU), against one process."""

import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

COMMON = ["--data", "digits", "-q", "--set", "hidden_layer_sizes=(32,)", "--set",
          "random_state=0", "--set", "batch_size=64", "--set", "n_iter_no_change=100"]


def _run(args, n_proc, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if n_proc == 1:
        cmd = [sys.executable, "-m", "aekit", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n_proc}",
               "--standalone", "-m", "aekit", *args]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _weights(path):
    return load_file(str(path))


@pytest.mark.parametrize("model", ["ae", "vae"])
def test_two_processes_match_one_process(tmp_path, model):
    args = ["fit", model, *COMMON, "--set", "max_iter=4"]
    _run([*args, "-o", str(tmp_path / "one.safetensors")], 1)
    _run([*args, "-o", str(tmp_path / "two.safetensors")], 2)
    one, two = _weights(tmp_path / "one.safetensors"), _weights(tmp_path / "two.safetensors")
    assert one.keys() == two.keys()
    if model == "ae":      # no noise: the same global batches give the same weights
        for name in one:
            np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)
    else:                  # each rank draws its own noise: close, not equal
        diff = max(float(np.abs(two[k] - one[k]).max()) for k in one)
        assert diff < 0.5
    assert not list(tmp_path.glob("*.tmp"))


def test_ddp_resume_matches_an_uninterrupted_ddp_run(tmp_path):
    args = ["fit", "vae", *COMMON]
    _run([*args, "--set", "max_iter=4", "-o", str(tmp_path / "full.safetensors"),
          "--checkpoint-dir", str(tmp_path / "full")], 2)
    _run([*args, "--set", "max_iter=2", "-o", str(tmp_path / "half.safetensors"),
          "--checkpoint-dir", str(tmp_path / "run")], 2)
    _run([*args, "--set", "max_iter=4", "-o", str(tmp_path / "resumed.safetensors"),
          "--checkpoint-dir", str(tmp_path / "run"), "--resume"], 2)
    full = _weights(tmp_path / "full.safetensors")
    resumed = _weights(tmp_path / "resumed.safetensors")
    for name in full:
        np.testing.assert_array_equal(resumed[name], full[name], err_msg=name)


def test_resuming_with_another_number_of_processes_is_refused(tmp_path):
    args = ["fit", "ae", *COMMON, "--set", "max_iter=1", "-o", str(tmp_path / "m.safetensors"),
            "--checkpoint-dir", str(tmp_path / "run")]
    _run(args, 2)
    out = subprocess.run([sys.executable, "-m", "aekit", *args, "--resume"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    assert "written by 2 process(es) and this run has 1" in out.stderr
