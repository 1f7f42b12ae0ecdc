POLICY = ""
