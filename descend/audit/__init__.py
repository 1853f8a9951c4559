"""descend audit: find wrong labels, strays and leaks in a dataset, and review them."""

from descend.audit.run import AUDIT_FOLDER, AuditResult, audit_folder, run_audit

__all__ = ["AUDIT_FOLDER", "AuditResult", "audit_folder", "run_audit"]
