"""Framework → control maps, as data. Controls name their framework tags in their metadata; this is the reverse
index a compliance report needs. A test keeps the two in agreement."""

from __future__ import annotations

# framework name -> (tag prefix used in control metadata, {requirement id: [control ids]})
FRAMEWORKS: dict[str, tuple[str, dict[str, list[str]]]] = {
    "CISA SCuBA Microsoft 365 baselines": ("CISA", {
        "MS.AAD.1.1v1": ["entra_legacy_auth_blocked"],
        "MS.EXO.5.1v1": ["exo_smtp_auth_disabled"],
    }),
    "CIS Microsoft 365 Foundations Benchmark": ("CIS", {
        "5.2.2.3": ["entra_legacy_auth_blocked"],
        "6.5.1": ["exo_modern_auth_enabled"],
        "6.5.4": ["exo_smtp_auth_disabled"],
        "7.2.1": ["spo_legacy_auth_disabled"],
    }),
}


def framework_tags() -> dict[str, list[str]]:
    """Metadata-style tag ("CIS 6.5.4") -> control ids."""
    return {f"{prefix} {requirement}": controls
            for prefix, requirements in FRAMEWORKS.values() for requirement, controls in requirements.items()}
