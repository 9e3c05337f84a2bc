//! Fuzzes every DBSC header parser with the same bytes, and checks that what each one accepts
//! survives being written back as a structured field and parsed again.

#![no_main]

use devbound::crypto::Algorithm;
use devbound::dbsc::headers::{
    self, HeaderError, MAX_HEADER_LEN, RegistrationOffer, parse_challenges, parse_registration,
    parse_skipped, parse_string_or_bare,
};
use libfuzzer_sys::fuzz_target;
use sfv::{BareItem, InnerList, Item, ListEntry, Parameters, SerializeValue};

fuzz_target!(|data: &[u8]| {
    check_string_or_bare(data);
    check_skipped(data);
    check_registration(data);
    check_challenges(data);
});

fn check_string_or_bare(data: &[u8]) {
    let text = match parse_string_or_bare(headers::RESPONSE, data) {
        Ok(text) => text,
        Err(HeaderError::TooLong(_)) => {
            assert!(data.len() > MAX_HEADER_LEN);
            return;
        }
        Err(_) => return,
    };
    assert!(data.len() <= MAX_HEADER_LEN);

    // A bare value is returned exactly as sent, without the surrounding white space.
    let trimmed = data.trim_ascii();
    if trimmed.first() != Some(&b'"') {
        assert_eq!(text.as_bytes(), trimmed, "bare value changed");
    }

    // Whichever form arrived, the value written as an sf-string reads back unchanged.
    let quoted = Item::new(BareItem::String(text.clone())).serialize_value();
    let Ok(quoted) = quoted else {
        panic!("accepted value {text:?} cannot be written as an sf-string");
    };
    if quoted.len() > MAX_HEADER_LEN {
        return;
    }
    let reparsed = parse_string_or_bare(headers::SESSION_ID, quoted.as_bytes());
    assert_eq!(
        reparsed.as_ref(),
        Ok(&text),
        "sf-string {quoted:?} read back differently"
    );
}

fn check_skipped(data: &[u8]) {
    let Ok(entries) = parse_skipped(data) else {
        return;
    };
    if entries.is_empty() {
        return;
    }
    let list = entries
        .iter()
        .map(|entry| {
            let mut params = Parameters::new();
            if let Some(id) = &entry.session_identifier {
                params.insert("session_identifier".into(), BareItem::String(id.clone()));
            }
            ListEntry::Item(Item::with_params(
                BareItem::String(entry.reason.clone()),
                params,
            ))
        })
        .collect::<Vec<_>>();
    assert_round_trip(&list, parse_skipped, &entries);
}

fn check_registration(data: &[u8]) {
    let Ok(offers) = parse_registration(data) else {
        return;
    };
    for offer in &offers {
        check_registration_builder(offer);
    }
    if offers.is_empty() {
        return;
    }
    let list = offers.iter().map(offer_entry).collect::<Vec<_>>();
    assert_round_trip(&list, parse_registration, &offers);
}

/// Checks that the server's own builder, given the fields of a parsed offer, writes a header
/// that parses back to them.
fn check_registration_builder(offer: &RegistrationOffer) {
    let Some(authorization) = &offer.authorization else {
        return;
    };
    let algorithms = offer
        .algorithms
        .iter()
        .filter_map(|name| Algorithm::from_name(name))
        .collect::<Vec<_>>();
    let built = headers::registration(&algorithms, &offer.path, &offer.challenge, authorization);
    let Ok(built) = built else {
        panic!("builder cannot write the parsed offer {offer:?}");
    };
    if built.len() > MAX_HEADER_LEN {
        return;
    }
    let expected = RegistrationOffer {
        algorithms: algorithms.iter().map(|alg| alg.name().to_owned()).collect(),
        ..offer.clone()
    };
    assert_eq!(parse_registration(built.as_bytes()), Ok(vec![expected]));
}

fn offer_entry(offer: &RegistrationOffer) -> ListEntry {
    let tokens = offer
        .algorithms
        .iter()
        .map(|name| Item::new(BareItem::Token(name.clone())))
        .collect();
    let mut params = Parameters::new();
    params.insert("path".into(), BareItem::String(offer.path.clone()));
    params.insert(
        "challenge".into(),
        BareItem::String(offer.challenge.clone()),
    );
    if let Some(authorization) = &offer.authorization {
        params.insert(
            "authorization".into(),
            BareItem::String(authorization.clone()),
        );
    }
    ListEntry::InnerList(InnerList::with_params(tokens, params))
}

fn check_challenges(data: &[u8]) {
    let Ok(challenges) = parse_challenges(data) else {
        return;
    };
    for (challenge, id) in &challenges {
        let Some(id) = id else {
            continue;
        };
        let Ok(built) = headers::challenge(challenge, id) else {
            panic!("builder cannot write the parsed challenge {challenge:?} for {id:?}");
        };
        if built.len() > MAX_HEADER_LEN {
            continue;
        }
        let reparsed = parse_challenges(built.as_bytes());
        assert_eq!(reparsed, Ok(vec![(challenge.clone(), Some(id.clone()))]));
    }
}

/// Serializes `list`, parses it with `parse`, and requires the same values back.
fn assert_round_trip<T: PartialEq + std::fmt::Debug>(
    list: &Vec<ListEntry>,
    parse: fn(&[u8]) -> Result<Vec<T>, HeaderError>,
    expected: &[T],
) {
    let Ok(serialized) = list.serialize_value() else {
        panic!("parsed values cannot be written back: {expected:?}");
    };
    // Quoting a bare value or a token adds bytes, so the written form can exceed the limit.
    if serialized.len() > MAX_HEADER_LEN {
        return;
    }
    let reparsed = parse(serialized.as_bytes());
    assert_eq!(
        reparsed.as_deref(),
        Ok(expected),
        "{serialized:?} read back differently"
    );
}
