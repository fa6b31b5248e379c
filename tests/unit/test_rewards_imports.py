import subprocess
import sys


def test_rewards_and_debate_import_neither_ray_nor_vllm():
    code = (
        "import sys, ray_adlf.rewards.scorer, ray_adlf.rewards.combine, ray_adlf.debate.critics, "
        "ray_adlf.debate.protocol; print(sorted(m for m in ('ray', 'vllm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
