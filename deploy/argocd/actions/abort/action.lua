-- Ask the operator to roll back: new connections go to stable at once and the canary drains.
local annotations = obj.metadata.annotations or {}
annotations["resonance.liminal.dev/rollout-action"] = "abort"
obj.metadata.annotations = annotations
return obj
