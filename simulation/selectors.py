"""What the simulator reads: drafts and runs an admin may see, the live rules as a
draft, a draft's diff against them, and the replay's input (the window's studies
streamed in arrival order, the readers' reading rates, the recorded decisions)."""
