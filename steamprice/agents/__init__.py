"""Stream agents: intake and schedule, crawl, normalize, change detection."""
