"""Services: enable, disable, show/list, request, verify, wait. They never print nor import azure."""
