from ray_adlf.cli import main
from ray_adlf.config import load_yaml


def test_demo_prepares_data_and_model_and_writes_config(tmp_path, capsys):
    assert main(["demo", "--output_dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "rows: 400" in out and "model: tiny (459,392 parameters" in out
    cfg = load_yaml(tmp_path / "config.yaml")
    assert cfg.model.model_name == "tiny" and cfg.data.data_path == "sample"
