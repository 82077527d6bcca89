"""eldercare: smart eldercare monitoring along the care chain (home, elder station, institution)."""

__version__ = "0.1.0"
