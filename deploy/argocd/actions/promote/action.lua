-- Ask the operator to finish the current step: end a pause, accept an inconclusive analysis, promote a preview.
local annotations = obj.metadata.annotations or {}
annotations["resonance.liminal.dev/rollout-action"] = "promote"
obj.metadata.annotations = annotations
return obj
