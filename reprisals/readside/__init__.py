"""The read side: the queries behind the pages and the API, in the domain's terms (decision 29).

Views and API endpoints call these functions and render what they return; they build no query of their
own. Each module answers one screen's questions: ``queue`` (the lead's queue and the homes),
``case_list`` (the case list and its filters, shared by the page and the API), ``case_facts`` (the case
page). They read; they never write or commit.
"""
