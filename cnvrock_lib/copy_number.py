"""Copy-number states and call labels shared by every stage (SPEC §6, §7).

The HMM of stage 02 has one state per entry of :data:`CN_STATES` (copies relative to the
haploid baseline, CN 1 = copy ratio 1); ``states.npy`` stores indices into it. Stage 03's
call codes are −1 uncallable, 0 absent, 1 normal/present, 2 amplified.
"""

from __future__ import annotations

CN_STATES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
CN0_STATE = CN_STATES.index(0.0)
CN1_STATE = CN_STATES.index(1.0)
AMP_MIN_STATE = CN_STATES.index(1.5)   # first state with CN >= 1.5

CHROM_LABELS = {-1: "uncallable", 0: "absent", 1: "normal", 2: "amplified"}
PLASMID_LABELS = {-1: "uncallable", 0: "absent", 1: "present", 2: "amplified"}
