//! The flag syntax every `vpc-cni <command>` shares: `--flag VALUE` or `--flag=VALUE`, switches without a value,
//! `-h`/`--help`.

use std::slice;

/// The command's arguments, one flag at a time.
#[derive(Debug)]
pub struct Flags<'a> {
    args: slice::Iter<'a, String>,
}

/// One flag as given: its name and the value written after `=`, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub name: String,
    inline: Option<String>,
}

impl<'a> Flags<'a> {
    pub fn new(args: &'a [String]) -> Flags<'a> {
        Flags { args: args.iter() }
    }

    /// The next flag; a `--flag=value` argument is split at its first `=`.
    pub fn next_flag(&mut self) -> Option<Flag> {
        let arg = self.args.next()?;
        Some(match arg.split_once('=') {
            Some((name, v)) if name.starts_with("--") => Flag {
                name: name.to_string(),
                inline: Some(v.to_string()),
            },
            _ => Flag {
                name: arg.clone(),
                inline: None,
            },
        })
    }

    /// The value of `flag`: after its `=`, else the next argument; empty is refused.
    pub fn value(&mut self, flag: &Flag) -> Result<String, String> {
        match flag.inline.clone().or_else(|| self.args.next().cloned()) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(format!("{} needs a value", flag.name)),
        }
    }

    /// The value of `flag` as a whole number of at least `min`.
    pub fn whole(&mut self, flag: &Flag, min: u32) -> Result<u32, String> {
        let v = self.value(flag)?;
        match v.parse::<u32>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(format!(
                "{} {v:?}: expected a whole number >= {min}",
                flag.name
            )),
        }
    }
}

impl Flag {
    /// A switch given: `true`. A switch takes no value: `--json=yes` is refused rather than ignored.
    pub fn switch(&self) -> Result<bool, String> {
        match self.inline {
            None => Ok(true),
            Some(_) => Err(format!("{} takes no value", self.name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn values_come_inline_or_from_the_next_argument() {
        let a = args(&["--subnet", "10.0.0.0/24", "--max-eni=3", "--json", "pos=x"]);
        let mut f = Flags::new(&a);
        let s = f.next_flag().unwrap();
        assert_eq!(s.name, "--subnet");
        assert_eq!(f.value(&s).unwrap(), "10.0.0.0/24");
        let m = f.next_flag().unwrap();
        assert_eq!(f.whole(&m, 1).unwrap(), 3);
        let j = f.next_flag().unwrap();
        assert_eq!(j.switch(), Ok(true));
        // Only `--` flags split at `=`.
        assert_eq!(f.next_flag().unwrap().name, "pos=x");
        assert_eq!(f.next_flag(), None);
    }

    #[test]
    fn bad_values_name_the_flag_and_what_is_allowed() {
        let a = args(&["--max-eni=0", "--json=1", "--svg="]);
        let mut f = Flags::new(&a);
        let m = f.next_flag().unwrap();
        assert_eq!(
            f.whole(&m, 1),
            Err("--max-eni \"0\": expected a whole number >= 1".into())
        );
        assert_eq!(
            f.next_flag().unwrap().switch(),
            Err("--json takes no value".into())
        );
        let s = f.next_flag().unwrap();
        assert_eq!(f.value(&s), Err("--svg needs a value".into()));
        let a = args(&["--svg"]);
        let mut f = Flags::new(&a);
        let s = f.next_flag().unwrap();
        assert_eq!(f.value(&s), Err("--svg needs a value".into()));
    }
}
