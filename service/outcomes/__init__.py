"""What happened to the cards we sent: issued cards, clinicians' feedback, suppression, reports.

The hook path records each card it sends and asks whether a clinician has already said "plan in
place" for the same evidence; the feedback endpoint records outcomes; the CLI reports on them.
Nothing here holds names, raw patient ids or clinical text.
"""
