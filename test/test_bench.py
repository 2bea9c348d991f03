"""`stereo-depth bench` measures what it says: a missing backend is reported, not hidden."""
from ros2_stereo_depth.cli import main


def test_bench_reports_backends_and_sgbm_ratio(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--config", "tiny", "--width", "128", "--height", "64", "--max-disparity", "32",
                 "--backends", "torch", "tensorrt", "--repeats", "2", "--warmup", "1", "--threads", "1",
                 "--json", str(out)])
    assert code == 0
    import json
    report = json.loads(out.read_text())
    rows = {row["method"]: row for row in report["rows"]}
    torch_row = rows["tiny on torch"]
    sgbm_row = next(r for name, r in rows.items() if name.startswith("OpenCV SGBM"))
    assert torch_row["mean_ms"] > 0 and sgbm_row["mean_ms"] > 0
    assert abs(torch_row["x_sgbm_time"] - torch_row["mean_ms"] / sgbm_row["mean_ms"]) < 1e-9
    assert torch_row["fps"] == 1e3 / torch_row["mean_ms"]
    assert "TensorRT" in rows["tensorrt"]["skipped"] or "tensorrt" in rows["tensorrt"]["skipped"]
    assert "| tiny on torch | cpu |" in capsys.readouterr().out
