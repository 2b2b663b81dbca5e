"""Params: the seed's config loads unchanged; every error path names the key."""

import shutil
from pathlib import Path

import pytest
import yaml

from cnvrock_lib import params as P
from cnvrock_lib.errors import ParamsError

SEED_CONFIG = Path(__file__).parent / "data" / "seed_config_exp32.yaml"


def _seed_tree(tmp_path: Path) -> Path:
    """Lay out the original repository's relative paths so the seed config resolves."""
    cfg_dir = tmp_path / "repo" / "models" / "experiments" / "32"
    cfg_dir.mkdir(parents=True)
    cfg = cfg_dir / "config.yaml"
    shutil.copy(SEED_CONFIG, cfg)
    raw = yaml.safe_load(cfg.read_text())
    for key in ("store_path", "plasmid_store_path"):
        (cfg_dir / raw[key]).resolve().mkdir(parents=True)
    for key in ("kpsc_gt_path", "kpsc_kleborate_gt_path", "kpsc_meta_path", "plasmid_gene_coords_path"):
        f = (cfg_dir / raw[key]).resolve()
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("sample_id\n")
    return cfg


def _write(tmp_path: Path, body: dict) -> Path:
    (tmp_path / "store").mkdir(exist_ok=True)
    base = {"store_path": "store", "out_dir": "out"}
    base.update(body)
    f = tmp_path / "tier.yaml"
    f.write_text(yaml.safe_dump(base))
    return f


def test_seed_config_loads_unchanged(tmp_path):
    cfg = _seed_tree(tmp_path)
    prm = P.load_params(cfg)
    assert prm.epochs == 150 and prm.lr == pytest.approx(1e-4) and prm.latent_dim == 10
    assert prm.hmm_self_transition == pytest.approx(0.8)
    assert prm.cnv_flank_padding == 100000
    # relative paths resolved against the YAML's own directory
    assert prm.store_path == str((tmp_path / "repo" / "data" / "inputs" / "KpSC-expansion-5k-mq20-1000bp-npy").resolve())
    assert Path(prm.out_dir).is_absolute()
    # added keys get their defaults
    assert prm.seed == 42 and prm.device == "auto" and prm.val_fraction == pytest.approx(0.1)
    assert prm.aux_loss == "align" and prm.tier == "config"


def test_seed_config_without_data_names_the_missing_path(tmp_path):
    cfg = tmp_path / "config.yaml"
    shutil.copy(SEED_CONFIG, cfg)
    with pytest.raises(ParamsError, match=r"key 'store_path' points to .*KpSC-expansion-5k-mq20-1000bp-npy, which does not exist"):
        P.load_params(cfg)
    assert P.load_params(cfg, check_files=False).batch_size == 128


def test_unknown_key_suggests_closest(tmp_path):
    with pytest.raises(ParamsError, match=r"unknown key 'epoch'.*did you mean 'epochs'"):
        P.load_params(_write(tmp_path, {"epoch": 10}))


@pytest.mark.parametrize(
    "key,value,pattern",
    [
        ("epochs", "many", r"'epochs' = 'many' has type str; expected int"),
        ("epochs", -5, r"'epochs' = -5 is out of range; expected a positive integer"),
        ("epochs", 1.5, r"'epochs' = 1.5 has type float"),
        ("lr", True, r"'lr' = True is a boolean"),
        ("hmm_self_transition", 1.2, r"'hmm_self_transition' = 1.2 is out of range"),
        ("cnv_min_cn1_proportion", -0.1, r"'cnv_min_cn1_proportion' = -0.1 is out of range; expected between 0 and 1"),
        ("pcn_amp_threshold", 0, r"'pcn_amp_threshold' = 0.0 is out of range"),
        ("device", "tpu", r"'device' = 'tpu' is out of range; expected one of auto, cpu, cuda"),
        ("hmm_n_states", 5, r"'hmm_n_states' = 5 is out of range"),
        ("conv_channels", [8, 16], r"'conv_channels' = \[8, 16\] is out of range; expected three positive integers"),
    ],
)
def test_wrong_type_or_range_names_key_value_and_expectation(tmp_path, key, value, pattern):
    with pytest.raises(ParamsError, match=pattern):
        P.load_params(_write(tmp_path, {key: value}))


def test_numeric_text_without_dot_is_accepted(tmp_path):
    assert P.load_params(_write(tmp_path, {"lr": "1e-3"})).lr == pytest.approx(1e-3)


def test_unknown_module_name_lists_known(tmp_path):
    with pytest.raises(ParamsError, match=r"'architecture' = '07_transformer' is not a registered implementation; known: 06_conv_vae"):
        P.load_params(_write(tmp_path, {"architecture": "07_transformer"}))


def test_missing_required_key(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("epochs: 3\n")
    with pytest.raises(ParamsError, match="required key 'store_path' is missing"):
        P.load_params(f)


def test_missing_input_file_names_key_and_resolved_path(tmp_path):
    with pytest.raises(ParamsError, match=r"key 'kpsc_gt_path' points to .*/nope.tsv, which does not exist"):
        P.load_params(_write(tmp_path, {"kpsc_gt_path": "nope.tsv"}))


def test_out_dir_inside_input_store_is_refused(tmp_path):
    with pytest.raises(ParamsError, match="out_dir .* lies inside the input store of key 'store_path'"):
        P.load_params(_write(tmp_path, {"out_dir": "store/results"}))


def test_params_file_errors(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        P.load_params(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1, 2\n")
    with pytest.raises(ParamsError, match="is not valid YAML"):
        P.load_params(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ParamsError, match="expected a YAML mapping"):
        P.load_params(lst)


def test_legacy_keys_are_accepted_and_feed_sin2(tmp_path):
    prm = P.load_params(_write(tmp_path, {"normalise": True, "hmm_n_jobs": 8, "plasmid_cnv": True,
                                          "aux_loss": "sin2", "sin_loss_max_weight": 0.3,
                                          "sin_loss_warmup_epochs": 12}))
    assert prm.aux_weight == pytest.approx(0.3) and prm.aux_warmup_epochs == 12
    assert prm.legacy["hmm_n_jobs"] == 8
    assert "legacy_keys" in prm.to_dict()


def test_resolved_params_written_and_hash_stable(tmp_path):
    f = _write(tmp_path, {"epochs": 7})
    a, b = P.load_params(f), P.load_params(f)
    assert a.hash() == b.hash()
    assert P.load_params(f, overrides={"epochs": 8}).hash() != a.hash()
    out = P.write_resolved(a)
    doc = yaml.safe_load(out.read_text())
    assert doc["params"]["epochs"] == 7 and Path(doc["params"]["store_path"]).is_absolute()


def test_simulate_block_needs_and_resolves_data_dir(tmp_path):
    prm = P.load_params(_write(tmp_path, {"simulate": {"data_dir": "sim", "n_samples": 10}}))
    assert prm.simulate["data_dir"] == str((tmp_path / "sim").resolve())
    with pytest.raises(ParamsError, match="'simulate' needs 'data_dir'"):
        P.load_params(_write(tmp_path, {"simulate": {"n_samples": 10}}))


def test_tier_yamls_in_repo_parse():
    """Every committed tier YAML passes schema validation (files checked only for simulated tiers)."""
    tiers = sorted((Path(__file__).parents[1] / "params").glob("*.yaml"))
    assert {t.stem for t in tiers} >= {"demo", "smoke", "545", "5k", "10k", "20k", "40k"}
    for t in tiers:
        prm = P.load_params(t, check_files=False)
        assert prm.tier == t.stem


def test_params_reference_doc_is_current():
    """docs/PARAMS.md lists every key with its default; regenerate with tools/make_params_doc.py."""
    from cnvrock_lib.params import SCHEMA, reference_markdown

    doc = (Path(__file__).resolve().parents[1] / "docs" / "PARAMS.md").read_text()
    assert doc == reference_markdown(), "docs/PARAMS.md is stale: run python tools/make_params_doc.py"
    for key in SCHEMA:
        assert f"| `{key}` |" in doc


# --------------------------------------------------------------------------- issue 15
def test_a_latin1_byte_is_a_one_line_error_naming_the_line(tmp_path):
    f = _write(tmp_path, {"tier": "x"})
    f.write_bytes(f.read_bytes() + b"# caf\xe9\n")
    with pytest.raises(ParamsError, match=r"tier.yaml is not UTF-8 text: byte 0xe9 on line 4; save the file as UTF-8"):
        P.load_params(f)


def test_a_duplicate_key_is_refused_not_last_wins(tmp_path):
    f = _write(tmp_path, {"epochs": 3})
    f.write_text(f.read_text() + "epochs: 300\n")
    with pytest.raises(ParamsError, match=r"tier.yaml: duplicate key 'epochs' on lines 1 and 4; expected each key once"):
        P.load_params(f)


@pytest.mark.parametrize("key", ["holdout_ids_path", "plasmid_gene_families_path", "kpsc_gt_path"])
def test_a_directory_where_a_file_is_expected_is_refused_at_load(tmp_path, key):
    (tmp_path / "adir").mkdir()
    with pytest.raises(ParamsError, match=rf"key '{key}' points to .*adir, which is a directory; expected a file"):
        P.load_params(_write(tmp_path, {key: "adir"}))


def test_a_file_where_a_store_directory_is_expected_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ParamsError, match=r"key 'plasmid_store_path' points to .*afile, which is a file; "
                                          r"expected a store directory"):
        P.load_params(_write(tmp_path, {"plasmid_store_path": "afile"}))


def test_a_frozen_copy_loads_to_the_same_values_and_names_the_original(tmp_path):
    src = _write(tmp_path, {"epochs": 3, "cnv_crr_amp_threshold": 2, "hmm_n_jobs": 4})
    params = P.load_params(src)
    frozen = P.write_frozen(params, tmp_path / "out" / "frozen.yaml")
    src.write_text(src.read_text().replace("epochs: 3", "epochs: 7"))  # an edit after freezing
    again = P.load_params(frozen)
    assert again.values == params.values and again.legacy == params.legacy and again.hash() == params.hash()
    assert again.source == src and again.frozen == frozen
