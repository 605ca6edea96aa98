-- Ask the operator to restart a rolled-back rollout from its first step, or rerun an inconclusive analysis.
local annotations = obj.metadata.annotations or {}
annotations["resonance.liminal.dev/rollout-action"] = "retry"
obj.metadata.annotations = annotations
return obj
