"""The worklist: which studies are offered to which radiologist, and claims."""
