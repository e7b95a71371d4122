"""The CPU facts that change what OpenVINO does with BF16, injectable per CPU kind.

Two facts differ between the CPU kinds this project has run on, and nothing else in the
BF16 policy depends on the CPU:

- **native BF16**: OpenVINO's ``OPTIMIZATION_CAPABILITIES`` lists ``BF16`` (AVX512-BF16 or
  AMX-BF16). ``host.facts.openvino_native_bf16`` reads it; the machine facts (so the runtime's
  policy and the export) and the runner's precision label all ask it there.
- **what OpenVINO computes when told bf16**: the inference precision the compiled model
  reports back (OpenVINO 2026.4.1): ``f32`` on an AVX2 CPU (the hint is ignored), ``bf16``
  on any AVX-512 CPU, emulated by oneDNN where BF16 is not native.

Seen: a 2-core AMD EPYC (AVX2, no AVX-512): no BF16 capability, f32 when told bf16. A Xeon
with AVX-512 VNNI and no AMX exposed: no BF16 capability, bf16 when told bf16 (output 0.016
from f32 on the ResNet50 stand-in). A Xeon Sapphire Rapids (AMX-BF16/INT8): BF16 listed,
bf16 when told bf16.

``inject`` makes this machine answer as the named kind. Only the reported facts change:
the numbers are this machine's own, so tests on injected kinds check labels, records and
decisions, never BF16 numerics.
"""

from __future__ import annotations

from edge_classify.runtime.engines import openvino_runner
from edge_classify.runtime.host import facts

# kind -> (native BF16 in OPTIMIZATION_CAPABILITIES, precision reported when told bf16)
KINDS = {
    "avx2": (False, "f32"),  # AMD EPYC, AVX2
    "avx512": (False, "bf16"),  # Xeon, AVX-512 VNNI, no AMX exposed: emulated
    "amx": (True, "bf16"),  # Xeon Sapphire Rapids
}


def inject(monkeypatch, kind: str) -> None:
    native, told_bf16 = KINDS[kind]
    monkeypatch.setattr(facts, "openvino_native_bf16", lambda device="CPU": native)

    def reported(self, compiled):
        asked = self._config["INFERENCE_PRECISION_HINT"]
        hint = told_bf16 if asked == "bf16" else asked
        return openvino_runner.computed_precision(self._file_precision, hint, native)

    monkeypatch.setattr(openvino_runner.OpenVinoRunner, "_reported_precision", reported)
