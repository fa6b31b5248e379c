import subprocess
import sys


def test_package_and_algo_import_neither_ray_nor_vllm():
    code = (
        "import sys, ray_adlf, ray_adlf.algo, ray_adlf.config, ray_adlf.data.validate, "
        "ray_adlf.data.formats; print(sorted(m for m in ('ray', 'vllm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
