"""CloudFormation's intrinsic functions, resolved with the parameters' values (their Default):
Conditions, Fn::If, Ref, AWS::NoValue, and the Rules functions. Enough for what this repo's
templates use; an unknown function is an error, not a guess. Used by check.py and patterns.py.
"""


NO_VALUE = object()


class Resolver:
    def __init__(self, template):
        self.params = {k: p.get("Default", "") for k, p in template.get("Parameters", {}).items()}
        self.types = {k: p.get("Type") for k, p in template.get("Parameters", {}).items()}
        self.conditions = template.get("Conditions", {})
        self.cache = {}

    def ref(self, name):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name == "AWS::Region":
            return "eu-west-1"
        if name == "AWS::AccountId":
            return "123456789012"
        if name not in self.params:
            raise KeyError(f"Ref {name} is not a parameter")
        v = str(self.params[name])
        return [x.strip() for x in v.split(",")] if self.types[name] == "CommaDelimitedList" else v

    def condition(self, name):
        if name not in self.cache:
            self.cache[name] = bool(self.resolve(self.conditions[name]))
        return self.cache[name]

    def resolve(self, node):
        if isinstance(node, list):
            out = [self.resolve(n) for n in node]
            return [n for n in out if n is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                a, b = self.resolve(arg[0]), self.resolve(arg[1])
                return a == b
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(a) for a in arg)
            if key == "Fn::Or":
                return any(self.resolve(a) for a in arg)
            # The Rules functions (CloudFormation "Rules" section).
            if key == "Fn::Contains":
                return self.resolve(arg[1]) in self.resolve(arg[0])
            if key == "Fn::EachMemberEquals":
                return all(m == self.resolve(arg[1]) for m in self.resolve(arg[0]))
            if key == "Fn::EachMemberIn":
                return all(m in self.resolve(arg[1]) for m in self.resolve(arg[0]))
            if key == "Fn::Join":
                return arg[0].join(str(x) for x in self.resolve(arg[1]))
            if key == "Fn::Split":
                return str(self.resolve(arg[1])).split(arg[0])
            if key == "Fn::Sub" and isinstance(arg, str):
                return {"Fn::Sub": arg}
            if key.startswith("Fn::"):
                raise ValueError(f"{key} is not resolved by intrinsics.py; add it")
        out = {k: self.resolve(v) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not NO_VALUE}
