"""Entry point of the policy pack: `pulumi preview --policy-pack policies` runs this file (through
`python -m pulumi.policy <engine> .` in this directory), and so does policy_runner. Building the
PolicyPack starts the analyzer server, prints its port and blocks: nothing may import this file."""

import sys
from pathlib import Path

# The pack reads the project's one copy of TPU and vLLM facts (components/) from the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policies import pack

PolicyPack(name=pack.NAME, policies=pack.POLICIES, enforcement_level=EnforcementLevel.MANDATORY)
