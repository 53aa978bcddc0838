"""HubSpot's standard properties the worker and tests use, and the demo portal's lifecycle properties
(lifecycle-spec.md §1, §2, §4). Pure data."""

from __future__ import annotations

__all__ = [
    "GROUPS",
    "STANDARD",
    "LIFECYCLE_GROUP",
    "LIFECYCLE_CONTACT",
    "LIFECYCLE_COMPANY",
    "READ_ONLY",
    "STATUSES",
    "MILESTONES",
    "REASONS",
    "VERTICALS",
    "options",
]

Opt = tuple[str, str]  # (value, label)
# (name, label, type, fieldType, group, options)
Spec = tuple[str, str, str, str, str, tuple[Opt, ...]]

BOOL: tuple[Opt, ...] = (("true", "True"), ("false", "False"))
LIFECYCLE_STAGES: tuple[Opt, ...] = (
    ("subscriber", "Subscriber"),
    ("lead", "Lead"),
    ("marketingqualifiedlead", "Marketing Qualified Lead"),
    ("salesqualifiedlead", "Sales Qualified Lead"),
    ("opportunity", "Opportunity"),
    ("customer", "Customer"),
    ("evangelist", "Evangelist"),
    ("other", "Other"),
)
LEAD_STATUS: tuple[Opt, ...] = tuple(
    (v, v.replace("_", " ").title())
    for v in (
        "NEW",
        "OPEN",
        "IN_PROGRESS",
        "OPEN_DEAL",
        "UNQUALIFIED",
        "ATTEMPTED_TO_CONTACT",
        "CONNECTED",
        "BAD_TIMING",
    )
)
BOUNCE_REASONS: tuple[Opt, ...] = (
    ("UNKNOWN_USER", "Unknown user"),
    ("MAILBOX_FULL", "Mailbox full"),
    ("CONTENT", "Content"),
    ("SPAM", "Spam"),
    ("POLICY", "Policy"),
    ("OTHER", "Other"),
)
TASK_STATUS: tuple[Opt, ...] = tuple(
    (v, v.replace("_", " ").title())
    for v in ("NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED")
)
TASK_PRIORITY: tuple[Opt, ...] = (("NONE", "None"), ("LOW", "Low"), ("MEDIUM", "Medium"), ("HIGH", "High"))
TASK_TYPE: tuple[Opt, ...] = (
    ("EMAIL", "Email"),
    ("CALL", "Call"),
    ("TODO", "To-do"),
    ("LINKED_IN", "LinkedIn"),
)
OWNER = "__owners__"  # placeholder: filled from the portal's owners
PIPELINES = "__pipelines__"
STAGES = "__stages__"

GROUPS: dict[str, tuple[tuple[str, str], ...]] = {
    "contacts": (
        ("contactinformation", "Contact information"),
        ("emailinformation", "Email information"),
        ("sales_properties", "Sales properties"),
        ("contactscoring", "Contact scoring"),
    ),
    "companies": (("companyinformation", "Company information"),),
    "deals": (("dealinformation", "Deal information"),),
    "tasks": (("task", "Task information"),),
    "notes": (("engagement", "Engagement information"),),
}


def _sys(prefix: str, group: str, created: str, modified: str) -> tuple[Spec, ...]:
    return (
        (created, "Create Date", "datetime", "date", group, ()),
        (modified, "Last Modified Date", "datetime", "date", group, ()),
        ("hs_object_id", "Record ID", "number", "number", group, ()),
        ("hs_merged_object_ids", f"Merged {prefix} IDs", "string", "text", group, ()),
    )


STANDARD: dict[str, tuple[Spec, ...]] = {
    "contacts": (
        ("email", "Email", "string", "text", "contactinformation", ()),
        ("firstname", "First Name", "string", "text", "contactinformation", ()),
        ("lastname", "Last Name", "string", "text", "contactinformation", ()),
        ("phone", "Phone Number", "string", "phonenumber", "contactinformation", ()),
        ("company", "Company Name", "string", "text", "contactinformation", ()),
        ("hubspotscore", "HubSpot Score", "number", "number", "contactscoring", ()),
        ("hubspot_owner_id", "Contact owner", "enumeration", "select", "sales_properties", ((OWNER, ""),)),
        ("lifecyclestage", "Lifecycle Stage", "enumeration", "radio", "contactinformation", LIFECYCLE_STAGES),
        ("hs_lead_status", "Lead Status", "enumeration", "radio", "sales_properties", LEAD_STATUS),
        ("hs_email_delivered", "Marketing emails delivered", "number", "number", "emailinformation", ()),
        ("hs_email_bounce", "Marketing emails bounced", "number", "number", "emailinformation", ()),
        (
            "hs_email_last_send_date",
            "Last marketing email send date",
            "datetime",
            "date",
            "emailinformation",
            (),
        ),
        (
            "hs_email_hard_bounce_reason_enum",
            "Email hard bounce reason",
            "enumeration",
            "select",
            "emailinformation",
            BOUNCE_REASONS,
        ),
        (
            "hs_email_bad_address",
            "Invalid email address",
            "bool",
            "booleancheckbox",
            "emailinformation",
            BOOL,
        ),
        (
            "hs_email_optout",
            "Unsubscribed from all email",
            "bool",
            "booleancheckbox",
            "emailinformation",
            BOOL,
        ),
        (
            "hs_email_quarantined",
            "Email address quarantined",
            "bool",
            "booleancheckbox",
            "emailinformation",
            BOOL,
        ),
        (
            "hs_sequences_is_enrolled",
            "Currently in Sequence",
            "bool",
            "booleancheckbox",
            "sales_properties",
            BOOL,
        ),
        *_sys("Contact", "contactinformation", "createdate", "lastmodifieddate"),
    ),
    "companies": (
        ("name", "Company name", "string", "text", "companyinformation", ()),
        ("domain", "Company Domain Name", "string", "text", "companyinformation", ()),
        ("website", "Website URL", "string", "text", "companyinformation", ()),
        ("phone", "Phone Number", "string", "phonenumber", "companyinformation", ()),
        ("hubspot_owner_id", "Company owner", "enumeration", "select", "companyinformation", ((OWNER, ""),)),
        ("lifecyclestage", "Lifecycle Stage", "enumeration", "radio", "companyinformation", LIFECYCLE_STAGES),
        *_sys("Company", "companyinformation", "createdate", "hs_lastmodifieddate"),
    ),
    "deals": (
        ("dealname", "Deal Name", "string", "text", "dealinformation", ()),
        ("amount", "Amount", "number", "number", "dealinformation", ()),
        ("pipeline", "Pipeline", "enumeration", "select", "dealinformation", ((PIPELINES, ""),)),
        ("dealstage", "Deal Stage", "enumeration", "radio", "dealinformation", ((STAGES, ""),)),
        ("closedate", "Close Date", "datetime", "date", "dealinformation", ()),
        ("hubspot_owner_id", "Deal owner", "enumeration", "select", "dealinformation", ((OWNER, ""),)),
        *_sys("Deal", "dealinformation", "createdate", "hs_lastmodifieddate"),
    ),
    "tasks": (
        ("hs_timestamp", "Due date", "datetime", "date", "task", ()),
        ("hs_task_subject", "Task Title", "string", "text", "task", ()),
        ("hs_task_body", "Task notes", "string", "textarea", "task", ()),
        ("hs_task_status", "Task Status", "enumeration", "select", "task", TASK_STATUS),
        ("hs_task_priority", "Priority", "enumeration", "select", "task", TASK_PRIORITY),
        ("hs_task_type", "Task Type", "enumeration", "select", "task", TASK_TYPE),
        ("hubspot_owner_id", "Assigned to", "enumeration", "select", "task", ((OWNER, ""),)),
        *_sys("Task", "task", "hs_createdate", "hs_lastmodifieddate"),
    ),
    "notes": (
        ("hs_timestamp", "Activity date", "datetime", "date", "engagement", ()),
        ("hs_note_body", "Note body", "string", "html", "engagement", ()),
        ("hs_attachment_ids", "Attached file IDs", "string", "text", "engagement", ()),
        ("hubspot_owner_id", "Activity assigned to", "enumeration", "select", "engagement", ((OWNER, ""),)),
        *_sys("Note", "engagement", "hs_createdate", "hs_lastmodifieddate"),
    ),
}

# Values HubSpot computes; the API answers 400 READ_ONLY_VALUE when a client writes them.
READ_ONLY = frozenset(
    {
        "createdate",
        "lastmodifieddate",
        "hs_lastmodifieddate",
        "hs_createdate",
        "hs_object_id",
        "hs_merged_object_ids",
        "hs_email_delivered",
        "hs_email_bounce",
        "hs_email_last_send_date",
        "hs_email_hard_bounce_reason_enum",
        "hs_email_bad_address",
        "hs_email_optout",
        "hs_email_quarantined",
        "hs_sequences_is_enrolled",
    }
)

STATUSES: tuple[Opt, ...] = (
    ("prospect", "Prospect"),
    ("mql", "MQL"),
    ("srl", "SRL"),
    ("sql", "SQL"),
    ("customer", "Customer"),
)
MILESTONES: tuple[Opt, ...] = (
    ("new", "New"),
    ("received_campaigns", "Received Campaigns"),
    ("dead", "Dead"),
    ("qualified", "Qualified"),
    ("unqualified", "Unqualified"),
    ("assigned", "Assigned"),
    ("in_review", "In Review / Acknowledged"),
    ("reassign", "Reassign"),
    ("sales_qualified", "Sales Qualified"),
    ("return_to_nurture", "Return to Nurture"),
    ("working", "Working"),
    ("contract_negotiations", "Contract Negotiations"),
    ("convert_to_customer", "Convert to Customer"),
    ("active", "Active"),
    ("inactive", "Inactive"),
    ("out_of_business", "Out of Business"),
)
REASONS: tuple[Opt, ...] = (
    ("unable_to_contact", "Unable to contact"),
    ("not_a_good_fit_now", "Not a good fit right now"),
    ("no_budget_now", "No budget right now"),
    ("other_nurture", "Other"),
    ("do_not_call", "Do not call"),
    ("invalid_email", "Invalid email"),
    ("never_a_good_fit", "Will never be a good fit"),
    ("other_unqualified", "Other"),
)
VERTICALS: tuple[Opt, ...] = (
    ("marketplace", "Marketplace"),
    ("retail", "Retail"),
    ("wholesale", "Wholesale"),
)

LIFECYCLE_GROUP = ("lifecycle", "Lifecycle")
LIFECYCLE_CONTACT: tuple[Spec, ...] = (
    ("contact_status", "Contact status", "enumeration", "select", "lifecycle", STATUSES),
    ("contact_milestone", "Contact milestone", "enumeration", "select", "lifecycle", MILESTONES),
    ("milestone_reason", "Milestone reason", "enumeration", "select", "lifecycle", REASONS),
    ("contact_status_changed_at", "Contact status changed at", "datetime", "date", "lifecycle", ()),
    ("contact_milestone_changed_at", "Contact milestone changed at", "datetime", "date", "lifecycle", ()),
    ("lead_gen_suppressed", "Lead generation suppressed", "bool", "booleancheckbox", "lifecycle", BOOL),
    ("vertical", "Vertical", "enumeration", "select", "lifecycle", VERTICALS),
    ("gmv_forecast", "GMV forecast", "number", "number", "lifecycle", ()),
)
LIFECYCLE_COMPANY: tuple[Spec, ...] = (
    ("account_status", "Account status", "enumeration", "select", "lifecycle", STATUSES),
    ("poc_contact_id", "POC contact id", "string", "text", "lifecycle", ()),
)


def options(pairs: tuple[Opt, ...]) -> list[dict[str, object]]:
    """Option dicts in the properties API shape."""
    return [
        {"value": v, "label": lbl, "displayOrder": i, "hidden": False} for i, (v, lbl) in enumerate(pairs)
    ]
