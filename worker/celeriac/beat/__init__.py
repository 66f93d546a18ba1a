"""The scheduler: beat schedules fired once per slot by leader-elected replicas (DESIGN §4)."""
