workers = "abc"
