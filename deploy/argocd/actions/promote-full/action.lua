-- Ask the operator to skip every remaining canary step and promote.
local annotations = obj.metadata.annotations or {}
annotations["resonance.liminal.dev/rollout-action"] = "promote-full"
obj.metadata.annotations = annotations
return obj
