"""The markdown writer shared by `aekit bench` and the benchmark scripts."""

import pytest

from aekit.evaluation.quick_bench import machine_description, update_section


def test_update_section_appends_then_replaces_only_its_block(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nintro\n")
    update_section(path, "speed", "Speed", "<!-- speed:start -->\nold\n<!-- speed:end -->")
    update_section(path, "other", "Other", "<!-- other:start -->\nkeep\n<!-- other:end -->")
    update_section(path, "speed", "Speed", "<!-- speed:start -->\nnew\n<!-- speed:end -->")
    text = path.read_text()
    assert text.startswith("# Benchmarks\n\nintro\n")
    assert "new" in text and "old" not in text and "keep" in text
    assert text.count("## Speed") == 1 and text.index("## Speed") < text.index("## Other")


@pytest.mark.parametrize("flags, expected", [
    ("fpu avx2 avx512f avx512_bf16 avx512_vnni", "(AVX-512, AVX-512 BF16, no AMX)"),
    ("fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8", "(AVX-512, AVX-512 BF16, AMX)"),
    ("fpu sse2 avx2", "(no AVX-512, no AMX)"),
])
def test_machine_description_names_the_cpu_and_its_bf16_instructions(tmp_path, flags, expected):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: {flags}\n\n"
                    f"processor\t: 1\nmodel name\t: Test CPU 9000\nflags\t\t: {flags}\n")
    text = machine_description(info)
    assert text.startswith("Test CPU 9000, ") and expected in text and text.endswith("threads")


def test_machine_description_without_cpuinfo_still_names_cores_and_threads(tmp_path):
    text = machine_description(tmp_path / "missing")
    assert "cores" in text and "AMX" not in text and text.endswith("threads")


def test_fit_in_chunks_is_one_fit_and_stops_at_the_budget(tmp_path, digits):
    """benchmarks/fashion_nll.py --time-budget: chunks resumed from checkpoints give the
    same weights as one fit, and a spent budget stops between chunks (and says so)."""
    import sys
    from pathlib import Path

    import torch

    import aekit

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from fashion_nll import _fit_in_chunks

    X = digits[0][:300]
    kw = dict(hidden_layer_sizes=(16,), max_iter=6, random_state=0, n_iter_no_change=100,
              likelihood="bernoulli", binarize="dynamic")
    whole = aekit.VAE(**kw).fit(X)
    chunked = aekit.VAE(**kw)
    assert _fit_in_chunks(chunked, X, tmp_path / "a", False, 6, 2, 1e9) is False
    assert chunked.n_iter_ == 6
    for a, b in zip(whole.module_.state_dict().values(), chunked.module_.state_dict().values()):
        assert torch.equal(a, b)
    stopped = aekit.VAE(**kw)
    assert _fit_in_chunks(stopped, X, tmp_path / "b", False, 6, 2, 0.0) is True
    assert stopped.n_iter_ == 2
    # resumed with the budget back, it goes on to the end of the same run
    assert _fit_in_chunks(stopped, X, tmp_path / "b", True, 6, 2, 1e9) is False
    for a, b in zip(whole.module_.state_dict().values(), stopped.module_.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_checkpointed_model_is_the_checkpointed_run_and_its_networks_start_another(
        tmp_path, digits):
    """benchmarks/fashion_nll.py --init-from: the model rebuilt from a checkpoint scores as
    the fitted model; its networks, given to another model, start that model's fit (a
    near-zero learning rate leaves its scores where they were); and a checkpoint of a model
    fitted with given networks is rebuilt with the parameters that build them."""
    import sys
    from pathlib import Path

    import numpy as np

    import aekit

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from fashion_nll import checkpointed_model

    X = digits[0][:300]
    kw = dict(hidden_layer_sizes=(16,), n_components=3, random_state=0, likelihood="bernoulli",
              binarize="dynamic", n_importance_samples=8)
    vae = aekit.BetaVAE(architecture="gated", max_iter=4, **kw).fit(
        X, checkpoint_dir=str(tmp_path / "vae"))
    rebuilt, line = checkpointed_model(tmp_path / "vae", X, {})
    assert line == "BetaVAE after 4 epochs" and rebuilt.n_iter_ == 4
    np.testing.assert_array_equal(rebuilt.score_samples(X[:50]), vae.score_samples(X[:50]))

    nets = dict(encoder=rebuilt.module_["encoder"], decoder=rebuilt.module_["decoder"])
    still = aekit.BetaVAE(max_iter=1, learning_rate=1e-12, **kw, **nets).fit(
        X, checkpoint_dir=str(tmp_path / "still"))
    np.testing.assert_allclose(still.score_samples(X[:50]), vae.score_samples(X[:50]),
                               rtol=1e-5)
    # its checkpoint records no architecture for the given networks: the override says it
    again, _ = checkpointed_model(tmp_path / "still", X, {"architecture": "gated"})
    np.testing.assert_array_equal(again.score_samples(X[:50]), still.score_samples(X[:50]))
    with pytest.raises(RuntimeError, match="state_dict"):
        checkpointed_model(tmp_path / "still", X, {})


def test_fashion_nll_refuses_a_time_budget_with_a_cosine_schedule(monkeypatch, tmp_path, capsys):
    """Chunks of growing max_iter would move a cosine schedule's end: refused before any
    data is read."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import fashion_nll

    monkeypatch.setattr(sys, "argv", [
        "fashion_nll.py", "--time-budget", "60", "--checkpoint-dir", str(tmp_path),
        "--params", '{"learning_rate_schedule": "cosine"}'])
    monkeypatch.setattr(fashion_nll.aekit.datasets, "load", lambda *a, **k: pytest.fail("read"))
    with pytest.raises(SystemExit) as stop:
        fashion_nll.main()
    assert stop.value.code == 2
    assert "cosine schedule" in capsys.readouterr().err


def test_checkpointed_model_of_an_early_stopping_run_has_its_best_weights(tmp_path, digits):
    """With early stopping the fit returns the weights of the best validation epoch, and so
    does the model rebuilt from its checkpoint (which also holds the last epoch's)."""
    import sys
    from pathlib import Path

    import numpy as np

    import aekit

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from fashion_nll import checkpointed_model

    X = digits[0][:300]
    vae = aekit.VAE(hidden_layer_sizes=(16,), n_components=3, random_state=0,
                    likelihood="bernoulli", max_iter=12, learning_rate=0.05,
                    early_stopping=True, n_iter_no_change=100, n_importance_samples=8
                    ).fit(X, checkpoint_dir=str(tmp_path))
    val = vae.history_["val_loss"]
    best = val.index(min(val)) + 1
    assert best < 12                # the last epoch is not the best: the two weights differ
    rebuilt, line = checkpointed_model(tmp_path, X, {})
    assert line == f"VAE after 12 epochs (the weights of its best validation epoch, {best})"
    np.testing.assert_array_equal(rebuilt.score_samples(X[:50]), vae.score_samples(X[:50]))
    # the rebuilt model saved to a file (how it travels without its optimizer state) starts
    # --init-from as the checkpoint folder does
    rebuilt.save(str(tmp_path / "model.safetensors"))
    from fashion_nll import starting_model
    assert starting_model(tmp_path, X, {})[1] == line
    loaded, file_line = starting_model(tmp_path / "model.safetensors", X, {})
    assert file_line == line
    np.testing.assert_array_equal(loaded.score_samples(X[:50]), vae.score_samples(X[:50]))


def test_fashion_nll_init_from_a_model_of_the_same_class_trains_it_on_with_this_runs_params(
        monkeypatch, tmp_path, digits):
    """--init-from with a model of the class being trained: every weight carries over
    (warm_start) and the run's own parameters apply, none of the starting run's (its cosine
    schedule would move a time budget's chunks)."""
    import sys
    from pathlib import Path

    import torch

    import aekit

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import fashion_nll

    X = digits[0][:300]
    start = aekit.get_model("beta_vae", n_components=3, hidden_layer_sizes=(16,), beta=1,
                            likelihood="bernoulli", max_iter=4, random_state=0,
                            learning_rate_schedule="cosine", kl_schedule="linear",
                            warmup_epochs=2).fit(X)
    start.save(str(tmp_path / "start.safetensors"))
    monkeypatch.setattr(fashion_nll.aekit.datasets, "load", lambda *a, **k: (X, None))
    trained = {}

    _skip_scoring(monkeypatch, fashion_nll, trained)
    monkeypatch.setattr(fashion_nll.aekit.models.beta_vae.BetaVAE, "fit",
                        _recording_fit(fashion_nll.aekit.models.beta_vae.BetaVAE.fit, trained))
    monkeypatch.setattr(sys, "argv", [
        "fashion_nll.py", "--epochs", "3", "--k", "2", "--n-test", "10", "--n-components", "3",
        "--hidden", "16", "--models", "beta_vae", "--init-from",
        str(tmp_path / "start.safetensors"), "--time-budget", "600", "--chunk", "1",
        "--checkpoint-dir", str(tmp_path / "run"), "--params",
        '{"beta": 1, "kl_schedule": "constant", "learning_rate": 0.0001}'])
    fashion_nll.main()
    model = trained["model"]
    assert model.get_params()["learning_rate_schedule"] == "constant"
    assert model.get_params()["warm_start"] is True and model.n_iter_ == 3
    assert "learning_rate" not in model.history_              # no schedule recorded
    first = trained["first_weights"]                          # the networks chunk 1 began with
    for name, value in start.module_.state_dict().items():
        assert torch.equal(first[name], value), name


def _skip_scoring(monkeypatch, fashion_nll, record: dict) -> dict:
    """fashion_nll.py without its K-sample scoring: ``record`` gets the model it would have
    scored (``"model"``), the rows (``"rows"``) and its ``history_``; the NLL is 0."""
    import numpy as np

    def score(model, rows, k, random_state):
        record.update(model=model, rows=rows, history=model.history_)
        return np.zeros(len(rows)), None

    monkeypatch.setattr(fashion_nll, "importance_sampled_log_likelihood", score)
    return record


def _recording_fit(fit, record):
    """``fit`` that records the weights the first training epoch starts from."""
    def recording(self, *args, **kwargs):
        if "first_weights" not in record and hasattr(self, "module_"):
            record["first_weights"] = {k: v.clone() for k, v in self._warm_state().items()}
        return fit(self, *args, **kwargs)
    return recording


def test_fashion_nll_records_the_best_validation_epoch_and_bound(monkeypatch, tmp_path, digits):
    """An early-stopping run's row in results.jsonl says which epoch's weights were scored
    and their validation loss."""
    import json
    import sys
    from pathlib import Path


    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import fashion_nll

    X = digits[0][:300]
    monkeypatch.setattr(fashion_nll.aekit.datasets, "load", lambda *a, **k: (X, None))
    scored = _skip_scoring(monkeypatch, fashion_nll, {})
    monkeypatch.setattr(sys, "argv", [
        "fashion_nll.py", "--epochs", "6", "--k", "2", "--n-test", "10", "--n-components", "3",
        "--hidden", "16", "--models", "vae", "--checkpoint-dir", str(tmp_path), "--params",
        '{"early_stopping": true, "n_iter_no_change": 100, "learning_rate": 0.05}'])
    fashion_nll.main()
    row = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[-1])
    val = scored["history"]["val_loss"]
    assert len(val) == row["epochs"] == 6
    assert row["val_loss"] == min(val) and val[row["best_epoch"] - 1] == min(val)


def test_fashion_2d_runs_the_tsne_map_methods_on_digits(monkeypatch, tmp_path):
    """Each t-SNE-map method of the 2-D benchmark fits the model it names (the Hellinger one
    with its metric) and scores it, and the table names both."""
    pytest.importorskip("openTSNE")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import fashion_2d

    fitted = []
    real = fashion_2d.aekit.get_model

    def recording(name, **params):
        fitted.append((name, params.get("embedding"), params.get("metric", "euclidean")))
        return real(name, **params)

    monkeypatch.setattr(fashion_2d.aekit, "get_model", recording)
    out = tmp_path / "B.md"
    monkeypatch.setattr(sys, "argv", [
        "fashion_2d.py", "--dataset", "digits", "--epochs", "1", "--trust-n", "200",
        "--methods", "neighbor_ae_tsne,neighbor_ae_tsne_hellinger", "--write", str(out)])
    fashion_2d.main()
    assert fitted == [("neighbor_ae", "tsne", "euclidean"), ("neighbor_ae", "tsne", "hellinger")]
    table = out.read_text()
    assert "t-SNE map of Hellinger distances" in table and "not run" not in table


def test_tsne_map_levers_scores_each_placement_and_the_models_costs_least(monkeypatch,
                                                                           tmp_path):
    """The map-levers probe runs on a small set (digits in place of Fashion-MNIST): one line
    per map and placement, and the model's own placement (several starts, lowest t-SNE
    cost) costs no more than the median start alone, which is one of its candidates, nor
    more starts than fewer."""
    pytest.importorskip("openTSNE")
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import tsne_map_levers

    digits = tsne_map_levers.aekit.datasets.load("digits", split="train")
    monkeypatch.setattr(tsne_map_levers.aekit.datasets, "load", lambda *a, **k: digits)
    out = tmp_path / "levers.jsonl"
    placements = [{}, {"start": "best"}, {"start": "best", "nearest_starts": 6},
                  {"rows": "hellinger", "start": "nearest", "n_iter": 20}]
    monkeypatch.setattr(sys, "argv", [
        "tsne_map_levers.py", "--maps", "default", "--n-map", "400", "--n-new", "150",
        "--placements", json.dumps(placements), "--out", str(out)])
    tsne_map_levers.main()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r.get("map") for r in rows] == [None, *["default"] * 5]
    scored = {json.dumps(r["placement"]): r for r in rows[2:]}
    assert list(scored) == [json.dumps(p) for p in placements]
    for r in scored.values():
        assert 0.5 < r["knn"] <= 1 and 0.8 < r["trust5"] <= 1 and r["cost"] > 0, r
    assert scored['{"start": "best"}']["cost"] <= scored["{}"]["cost"] + 1e-9
    # six nearest starts include the three: never a higher cost
    assert (scored['{"start": "best", "nearest_starts": 6}']["cost"]
            <= scored['{"start": "best"}']["cost"] + 1e-9)


def test_fashion_nll_images_give_conv_networks_the_image_shape(monkeypatch, tmp_path, digits):
    """--images: the models are fitted and scored on square images (here digits' 8x8), so
    ``"architecture": "conv"`` builds conv networks; without it the rows stay flat."""
    import sys
    from pathlib import Path


    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import fashion_nll

    X = digits[0][:200]
    monkeypatch.setattr(fashion_nll.aekit.datasets, "load", lambda *a, **k: (X, None))
    scored = _skip_scoring(monkeypatch, fashion_nll, {})
    argv = ["fashion_nll.py", "--epochs", "1", "--k", "2", "--n-test", "10",
            "--n-components", "4", "--hidden", "16", "--models", "hvae", "--params",
            '{"architecture": "conv"}', "--checkpoint-dir", str(tmp_path / "images")]
    monkeypatch.setattr(sys, "argv", [*argv, "--images"])
    fashion_nll.main()
    assert scored["rows"].shape == (10, 8, 8)
    assert type(scored["model"].module_["encoder"]).__name__ == "ConvEncoder"
    monkeypatch.setattr(sys, "argv", [*argv[:-1], str(tmp_path / "rows")])
    with pytest.raises(fashion_nll.aekit.exceptions.InputError, match="image input"):
        fashion_nll.main()


def test_hvae_conv_cost_times_each_network_and_writes_its_rows(monkeypatch, tmp_path):
    """benchmarks/hvae_conv_cost.py on a few 28x28 rows: every network and precision is
    fitted, the published-size conv networks give the two-level VAE its code's parameters
    and the pixels' logits, and each configuration gets a table row and a results line."""
    import json
    import sys
    from pathlib import Path

    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import hvae_conv_cost

    X = (np.random.default_rng(0).random((30, 784)) < 0.3).astype(np.float32)
    monkeypatch.setattr(hvae_conv_cost.aekit.datasets, "load", lambda *a, **k: (X, None))
    results = tmp_path / "cost.jsonl"
    monkeypatch.setattr(sys, "argv", [
        "hvae_conv_cost.py", "--rows", "20", "--epochs", "2", "--rounds", "1",
        "--precisions", "32", "--results", str(results), "--write", str(tmp_path / "B.md")])
    hvae_conv_cost.main()
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["config"] for r in rows] == ["gated_mlp", "aekit_conv", "gated_conv"]
    assert all(r["rows"] == 20 and len(r["seconds"]) == 1 and r["seconds"][0] > 0 for r in rows)
    table = (tmp_path / "B.md").read_text()
    assert all(f"| {name} |" in table for name in ("gated_mlp", "aekit_conv", "gated_conv"))
    enc = hvae_conv_cost.TopEncoder((1, 28, 28), 80)
    dec = hvae_conv_cost.ConvDecoder((80,), 784)
    import torch
    assert enc(torch.zeros(5, 1, 28, 28)).shape == (5, 80)
    assert dec(torch.zeros(5, 80)).shape == (5, 784)


def test_fashion_nll_trains_hvae_with_the_published_size_conv_networks_by_name(
        monkeypatch, tmp_path):
    """The conv networks of benchmarks/hvae_conv_cost.py are registered by name, so
    fashion_nll.py's JSON parameters reach them; the model's file names them, and it loads
    (with this module imported) to the same scores."""
    import sys
    from pathlib import Path

    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import fashion_nll

    X = (np.random.default_rng(0).random((60, 784)) < 0.3).astype(np.float32)
    monkeypatch.setattr(fashion_nll.aekit.datasets, "load", lambda *a, **k: (X, None))
    scored = _skip_scoring(monkeypatch, fashion_nll, {})
    monkeypatch.setattr(sys, "argv", [
        "fashion_nll.py", "--epochs", "1", "--k", "2", "--n-test", "10", "--n-components", "6",
        "--hidden", "16", "--models", "hvae", "--images", "--checkpoint-dir", str(tmp_path),
        "--params", '{"encoder": "convhvae_top_encoder", "decoder": ["convhvae_decoder", '
        '{"n_bottom": 3}], "n_top_components": 3}'])
    fashion_nll.main()
    model = scored["model"]
    assert type(model.module_["decoder"].net).__name__ == "ConvDecoder"
    path = str(tmp_path / "m.safetensors")
    model.save(path)
    again = fashion_nll.aekit.load(path)
    rows = X[:5].reshape(-1, 28, 28)
    np.testing.assert_allclose(again.transform(rows), model.transform(rows), rtol=1e-5)
